"""Drift report: request-log and outcome readers, hit rates, calibration, PSI (hand-computed)."""

import json
import math

import numpy as np
import pytest

from recjax.data.report import DataFormatError
from recjax.serving.drift import (
    PSI_EPSILON,
    drift_report,
    format_drift_report,
    population_stability_index,
    run_drift,
)
from recjax.serving.request_log import log_files, read_outcomes, read_request_log


def _request(ts, user, path, items):
    """A log line (with fields the reader ignores: k, stages); `items` is [(item, scores)]."""
    return {
        "ts": ts,
        "request_id": f"r{ts}",
        "model_version": "m@1",
        "user": user,
        "path": path,
        "k": len(items),
        "items": [{"item": item, "scores": scores} for item, scores in items],
        "stages": [],
        "latency_ms": 1.5,
    }


def _write_lines(path, lines):
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def _scores(retrieval, pre_ranking):
    return {"retrieval": retrieval, "pre_ranking": pre_ranking}


# Requests r1, r2 (rotated file, older) and r3, r4 (current file); r4 is anonymous popularity.
OLDER = [
    _request(100.0, "u1", "personalized", [("a", _scores(0.9, 0.8)), ("b", _scores(-0.2, 0.6))]),
    _request(110.0, "u2", "personalized", [("c", _scores(0.5, 0.4)), ("d", _scores(0.3, 0.2))]),
]
NEWER = [
    _request(200.0, "u1", "session", [("e", _scores(0.1, 0.1)), (7, _scores(0.95, 0.9))]),
    _request(210, None, "popularity", [("a", {"popularity": 0.5}), ("b", {"popularity": 0.3})]),
]


@pytest.fixture
def log_path(tmp_path):
    _write_lines(tmp_path / "requests.jsonl.1", OLDER)
    return _write_lines(tmp_path / "requests.jsonl", NEWER)


@pytest.fixture
def timed_outcomes(tmp_path):
    # u1/a after r1 (a hit for r1); u2/d before r2 (no hit); u1/e at r3's ts (a hit for r3);
    # u3 never asked.
    rows = ["user,item,timestamp", "u1,a,150", "u2,d,50", "u1,e,200", "u3,a,300"]
    path = tmp_path / "outcomes.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_reads_rotated_files_in_time_order(log_path, tmp_path):
    _write_lines(tmp_path / "requests.jsonl.10", [_request(50.0, "u9", "session", [])])
    late = _request(105.0, "u5", "session", [("z", {"retrieval": 0.0})])  # Written late.
    _write_lines(log_path, [*NEWER, late])
    assert [p.name for p in log_files(log_path)] == [
        "requests.jsonl.10",
        "requests.jsonl.1",
        "requests.jsonl",
    ]
    log = read_request_log(log_path)
    np.testing.assert_array_equal(log.request_ts, [50, 100, 105, 110, 200, 210])
    np.testing.assert_array_equal(log.request_user, ["u9", "u1", "u5", "u2", "u1", ""])
    np.testing.assert_array_equal(log.request, [1, 1, 2, 3, 3, 4, 4, 5, 5])
    np.testing.assert_array_equal(log.ts, [100, 100, 105, 110, 110, 200, 200, 210, 210])
    np.testing.assert_array_equal(log.rank, [1, 2, 1, 1, 2, 1, 2, 1, 2])
    np.testing.assert_array_equal(log.item, ["a", "b", "z", "c", "d", "e", "7", "a", "b"])
    np.testing.assert_array_equal(log.user[:3], ["u1", "u1", "u5"])
    np.testing.assert_array_equal(log.path[-2:], ["popularity", "popularity"])
    assert log.stages == ("retrieval", "popularity", "pre_ranking")
    nan = np.nan
    np.testing.assert_allclose(
        log.scores["pre_ranking"], [0.8, 0.6, nan, 0.4, 0.2, 0.1, 0.9, nan, nan]
    )
    np.testing.assert_allclose(
        log.scores["popularity"], [nan, nan, nan, nan, nan, nan, nan, 0.5, 0.3]
    )
    np.testing.assert_allclose(log.scores["retrieval"][:3], [0.9, -0.2, 0.0])
    assert (log.report.rows_read, log.report.events) == (6, 6)
    # A rotated file on its own is just that file.
    assert log_files(tmp_path / "requests.jsonl.1") == [tmp_path / "requests.jsonl.1"]


def test_hit_rates_count_only_outcomes_at_or_after_the_request(log_path, timed_outcomes):
    report = drift_report(read_request_log(log_path), read_outcomes(timed_outcomes))
    overall = report["hit_rate"]["overall"]
    # Requests with a user: r1 (a hit), r2 (d happened before), r3 (e, at its very ts).
    assert overall == {
        "requests": 3,
        "hit_rate": pytest.approx(2 / 3),
        "served_items": 6,
        "hits": 2,
        "precision": pytest.approx(2 / 6),
    }
    by_path = report["hit_rate"]["by_path"]
    assert by_path["personalized"]["hit_rate"] == 0.5
    assert by_path["personalized"]["precision"] == 0.25
    assert by_path["session"]["hit_rate"] == 1.0
    assert by_path["popularity"] == {
        "requests": 0,
        "hit_rate": None,
        "served_items": 0,
        "hits": 0,
        "precision": None,
    }
    counts = report["counts"]
    assert counts["requests"] == 4 and counts["anonymous_requests"] == 1
    assert counts["served_items"] == 8 and counts["users"] == 2
    # u1/a at 150, u1/e at 200 are after u1's first request (100); u2/d at 50 is before
    # u2's (110); u3 never asked.
    assert counts["outcomes"] == 4 and counts["outcomes_joined"] == 2
    assert counts["model_versions"] == {"m@1": 4}


def test_without_timestamps_every_outcome_counts(log_path, tmp_path):
    path = _write_lines(
        tmp_path / "outcomes.jsonl",
        [{"user": "u1", "item": "a"}, {"user": "u2", "item": "d"}, {"user": "u1", "item": 7}],
    )
    outcomes = read_outcomes(path)
    assert outcomes.timestamp is None
    report = drift_report(read_request_log(log_path), outcomes)
    overall = report["hit_rate"]["overall"]
    # r1/a, r2/d and r3/7 (the served integer id 7 and the outcome's match as strings).
    assert overall["hit_rate"] == 1.0
    assert overall["hits"] == 3 and overall["precision"] == pytest.approx(3 / 6)
    assert report["counts"]["outcomes_joined"] == 3


def test_calibration_buckets_and_ece(log_path, timed_outcomes):
    report = drift_report(read_request_log(log_path), read_outcomes(timed_outcomes), num_buckets=2)
    assert report["score_stage"] == "pre_ranking"  # The last stage of the funnel.
    calibration = report["calibration"]
    # Scored items with a user, by pre_ranking score: e .1 (hit), d .2, c .4 | b .6, a .8
    # (hit), 7 .9.
    low, high = calibration["buckets"]
    assert (low["count"], high["count"]) == (3, 3)
    np.testing.assert_allclose([low["mean_score"], high["mean_score"]], [0.7 / 3, 2.3 / 3])
    np.testing.assert_allclose([low["hit_rate"], high["hit_rate"]], [1 / 3, 1 / 3])
    assert (low["min_score"], high["max_score"]) == (0.1, 0.9)
    assert calibration["probabilities"]
    np.testing.assert_allclose(
        calibration["ece"], 0.5 * abs(0.7 / 3 - 1 / 3) + 0.5 * abs(2.3 / 3 - 1 / 3)
    )


def test_no_ece_for_scores_outside_0_1(log_path, timed_outcomes):
    report = drift_report(
        read_request_log(log_path), read_outcomes(timed_outcomes), score_stage="retrieval"
    )
    assert not report["calibration"]["probabilities"]
    assert report["calibration"]["ece"] is None
    assert sum(b["count"] for b in report["calibration"]["buckets"]) == 6
    with pytest.raises(ValueError, match="'ranking' is not in the log"):
        drift_report(
            read_request_log(log_path), read_outcomes(timed_outcomes), score_stage="ranking"
        )


def test_psi_by_hand():
    before = np.array([0.1, 0.2, 0.3, 0.4])  # Median 0.25: shares (1/2, 1/2).
    after = np.array([0.1, 0.3, 0.35, 0.4])  # Shares (1/4, 3/4).
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    np.testing.assert_allclose(population_stability_index(before, after, 2), expected)
    assert population_stability_index(before, before, 2) == 0.0
    # An empty bin has share PSI_EPSILON.
    empty_low = np.array([0.3, 0.35, 0.4, 0.4])
    smoothed = (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5) + 0.5 * math.log(1 / 0.5)
    np.testing.assert_allclose(population_stability_index(before, empty_low, 2), smoothed)


def test_shift_windows_split_at_the_median_request_or_split_ts(tmp_path):
    def log_with(scores_by_ts):
        lines = [_request(ts, "u", "session", [("i", {"s": s})]) for ts, s in scores_by_ts]
        return read_request_log(_write_lines(tmp_path / "requests.jsonl", lines))

    outcomes = read_outcomes(_write_lines(tmp_path / "none.jsonl", []))
    scores = [0.1, 0.2, 0.3, 0.4, 0.1, 0.3, 0.35, 0.4]
    log = log_with(list(zip(range(8), scores, strict=True)))
    shift = drift_report(log, outcomes, num_buckets=2)["shift"]
    assert shift["split_ts"] == 4.0
    np.testing.assert_allclose(shift["psi"], 0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert shift["reading"].startswith("major shift")
    before, after = shift["windows"]
    assert (before["items"], before["from_ts"], before["to_ts"]) == (4, 0.0, 3.0)
    np.testing.assert_allclose([before["mean"], before["std"]], [0.25, math.sqrt(0.0125)])
    np.testing.assert_allclose(after["mean"], 1.15 / 4)
    # Identical windows are stable; a split past the end leaves one window empty.
    same = log_with(list(zip(range(8), scores[:4] * 2, strict=True)))
    shift = drift_report(same, outcomes, num_buckets=2)["shift"]
    assert shift["psi"] == 0.0 and shift["reading"].startswith("stable")
    shift = drift_report(same, outcomes, split_ts=100.0)["shift"]
    assert shift["psi"] is None and shift["windows"][1]["items"] == 0


def test_malformed_log_lines_name_file_line_and_field(log_path, tmp_path):
    bad = tmp_path / "requests.jsonl.1"
    _write_lines(bad, [OLDER[0], "{not json", {**OLDER[1], "ts": "noon"}])
    with pytest.raises(DataFormatError) as raised:
        read_request_log(log_path)
    assert (raised.value.path, raised.value.line, raised.value.field) == (str(bad), 2, "line")
    _write_lines(bad, [OLDER[0], {**OLDER[1], "ts": "noon"}])
    with pytest.raises(DataFormatError, match=r"requests\.jsonl\.1:2: field 'ts'") as raised:
        read_request_log(log_path)
    assert raised.value.found == '"noon"'
    line = _request(1.0, "u", "session", [("x", {"retrieval": "high"})])
    _write_lines(bad, [line])
    with pytest.raises(DataFormatError, match=r":1: field 'items\[\]\.scores'"):
        read_request_log(log_path)


def test_skip_mode_counts_malformed_log_lines(log_path, tmp_path):
    missing_user = {key: value for key, value in OLDER[1].items() if key != "user"}
    _write_lines(tmp_path / "requests.jsonl.1", [OLDER[0], "[1, 2]", missing_user])
    log = read_request_log(log_path, on_error="skip")
    np.testing.assert_array_equal(log.request_ts, [100, 200, 210])
    assert log.report.skipped == {"malformed line": 1, "malformed user": 1}
    assert (log.report.rows_read, log.report.events) == (5, 3)


def test_malformed_outcomes_name_file_line_and_field(tmp_path):
    csv = tmp_path / "outcomes.csv"
    csv.write_text("user,item,timestamp\nu1,a,1\nu1,,2\nu2,b,later\n")
    with pytest.raises(DataFormatError) as raised:
        read_outcomes(csv)
    assert (raised.value.path, raised.value.line, raised.value.field) == (str(csv), 3, "item")
    skipped = read_outcomes(csv, on_error="skip")
    np.testing.assert_array_equal(skipped.user, ["u1"])
    np.testing.assert_array_equal(skipped.timestamp, [1.0])
    assert skipped.report.skipped == {"malformed item": 1, "malformed timestamp": 1}
    jsonl = _write_lines(
        tmp_path / "outcomes.jsonl",
        [{"user": "u1", "item": "a", "timestamp": 1}, {"user": "u1", "item": "b"}],
    )
    with pytest.raises(DataFormatError, match=r"outcomes\.jsonl:2: field 'timestamp'"):
        read_outcomes(jsonl)
    (tmp_path / "no_item.csv").write_text("user,timestamp\nu1,1\n")
    with pytest.raises(DataFormatError, match="field 'header'"):
        read_outcomes(tmp_path / "no_item.csv")
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        read_outcomes(tmp_path / "outcomes.parquet")


def test_run_drift_prints_and_writes_json(log_path, timed_outcomes, tmp_path, capsys):
    out = tmp_path / "report.json"
    report = run_drift(
        str(log_path), str(timed_outcomes), score_stage=None, split_ts=None, output=str(out)
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    text = capsys.readouterr().out
    assert text == format_drift_report(report) + "\n"
    assert "Hit rate of served lists" in text and "PSI" in text and "pre_ranking" in text


def test_a_log_without_scores_has_hit_rates_only(tmp_path):
    line = _request(1.0, "u1", "popularity", [("a", {})])
    log = read_request_log(_write_lines(tmp_path / "requests.jsonl", [line]))
    outcomes = read_outcomes(
        _write_lines(tmp_path / "outcomes.jsonl", [{"user": "u1", "item": "a"}])
    )
    report = drift_report(log, outcomes)
    assert report["score_stage"] is None and report["calibration"] is None
    assert report["hit_rate"]["overall"]["hit_rate"] == 1.0
    assert "No scores in the log" in format_drift_report(report)
