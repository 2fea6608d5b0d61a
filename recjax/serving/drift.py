"""Hybrid logging, offline half: served lists (request log) joined with outcomes -> drift report.

The request log is JSON Lines, one served response per line, rotated by the server
(`requests.jsonl` is the newest, then `.1`, `.2`, ...). Fields read here:

    ts (unix seconds), request_id, model_version, user (id or null), path, latency_ms,
    items: [{"item": id, "scores": {stage: score, ...}}, ...]   (in served order)

Other fields (k, stages, ...) are ignored. Scores are NaN where a stage gave none.

Outcomes are the interactions that actually happened (e.g. held-out test events): a CSV
with a `user,item[,timestamp]` header or JSON Lines with those fields. Ids are compared as
strings. A served item is a *hit* when its user has it among their outcomes (at or after
the request's ts when outcomes have timestamps). Requests without a user can't be joined:
they are counted, but not in hit rates or calibration.

The report has hit rates (per response and per served item), calibration of one stage's
score against hits, and that score's shift between two time windows as a population
stability index: PSI = Σ_b (q_b - p_b) ln(q_b / p_b) over bins b of the first window's
quantiles, p and q the two windows' shares. Usual reading: < 0.1 stable, 0.1-0.25 moderate
shift, > 0.25 major shift.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from glob import escape
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources.text import RowErrors, read_text, split_fields, split_lines, to_floats

PSI_MODERATE = 0.1  # PSI from here on reads as a moderate shift...
PSI_MAJOR = 0.25  # ...and from here on as a major one.
PSI_EPSILON = 1e-4  # Floor on a bin's share, so an empty bin gives a large, finite term.

_MISSING = object()  # A JSON field that is absent (null is None).


# Reading: request logs and outcomes.


@dataclasses.dataclass(frozen=True, kw_only=True)
class RequestLog:
    """Served responses as numpy columns: per request [R], and per served item [N].

    Requests are sorted by ts (stable). Anonymous requests have user "".
    """

    request_ts: np.ndarray  # [R] float64 unix seconds.
    request_id: np.ndarray  # [R] str.
    model_version: np.ndarray  # [R] str.
    request_user: np.ndarray  # [R] str; "" when the request had no user.
    request_path: np.ndarray  # [R] str: personalized, session, popularity...
    latency_ms: np.ndarray  # [R] float64 server-side latency.
    request: np.ndarray  # [N] int64 index of the item's request in the [R] columns.
    ts: np.ndarray  # [N] float64: request_ts[request].
    user: np.ndarray  # [N] str: request_user[request].
    path: np.ndarray  # [N] str: request_path[request].
    rank: np.ndarray  # [N] int64 1-based position in the served list.
    item: np.ndarray  # [N] str item id.
    scores: Mapping[str, np.ndarray]  # Stage -> [N] float64; NaN where it gave no score.
    stages: tuple[str, ...]  # Score stages in funnel order (their order in `scores` objects).
    report: LoadReport  # Lines read, requests kept, malformed lines skipped.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcomes:
    """Interactions that happened, as numpy columns [M]."""

    user: np.ndarray  # [M] str user id.
    item: np.ndarray  # [M] str item id.
    timestamp: np.ndarray | None  # [M] float64 unix seconds; None if the file has none.
    report: LoadReport  # Rows read, kept and skipped.


def log_files(path: str | Path) -> list[Path]:
    """The base log and its rotated siblings `<name>.N`, oldest (largest N) first."""
    path = Path(path)
    suffixes = {p: p.name[len(path.name) + 1 :] for p in path.parent.glob(escape(path.name) + ".*")}
    rotated = [p for p, suffix in suffixes.items() if re.fullmatch(r"[0-9]+", suffix)]
    files = sorted(rotated, key=lambda p: -int(suffixes[p]))
    if path.exists():
        files.append(path)
    if not files:
        raise FileNotFoundError(f"{path}: no such request log (nor rotated {path.name}.N)")
    return files


def read_request_log(path: str | Path, *, on_error: OnError = "raise") -> RequestLog:
    """Reads a request log: one file, or a base name with its rotated siblings.

    Args:
        path: the log file; its `<name>.N` siblings are read too, oldest first.
        on_error: "raise" `DataFormatError` on the first malformed line, or "skip" and
            count malformed lines in `RequestLog.report`.
    """
    report = LoadReport(source=str(path))
    parts = [  # File by file, so only one file's parsed JSON is held at a time.
        _to_request_log(_read_json_lines(file, on_error, report, _check_request), report)
        for file in log_files(path)
    ]
    report.events = sum(len(part.request_ts) for part in parts)
    report.check_balanced()
    return _merged(parts, report)


def read_outcomes(path: str | Path, *, on_error: OnError = "raise") -> Outcomes:
    """Reads outcomes: `.csv` (header `user,item[,timestamp]`, no quoting) or `.jsonl`.

    `.gz` files are read too. Timestamps are unix seconds, optional; in JSON Lines, once
    one line has a timestamp, every line needs one.

    Raises:
        DataFormatError: on a malformed line (with on_error="raise"), naming file and line.
        ValueError: if the extension is neither.
    """
    path = str(path)
    kind = Path(path.removesuffix(".gz")).suffix
    report = LoadReport(source=path)
    if kind == ".csv":
        user, item, timestamp = _read_outcome_csv(path, on_error, report)
    elif kind in (".jsonl", ".ndjson"):
        records = _read_json_lines(path, on_error, report, _check_outcome)
        user = _strings([r["user"] for r in records])
        item = _strings([r["item"] for r in records])
        timed = any("timestamp" in r for r in records)
        timestamp = np.array([r["timestamp"] for r in records], np.float64) if timed else None
    else:
        raise ValueError(f"{path}: outcomes must be .csv or .jsonl (optionally .gz)")
    report.events = len(user)
    report.check_balanced()
    return Outcomes(user=user, item=item, timestamp=timestamp, report=report)


_Check = Callable[[list[dict], np.ndarray, RowErrors], None]  # Flags bad fields by line.


def _read_json_lines(
    path: str | Path, on_error: OnError, report: LoadReport, check: _Check
) -> list[dict]:
    """The well-formed objects of a JSON Lines file; `check` flags bad fields by line."""
    errors = RowErrors(str(path), on_error)
    lines = split_lines(read_text(path, errors))
    records = [_loads(line) for line in lines.to_pylist()]
    numbers = np.arange(1, len(records) + 1)
    is_object = np.array([type(r) is dict for r in records], bool)
    errors.flag(~is_object, numbers, "line", "a JSON object", lines)
    records = [r if ok else {} for r, ok in zip(records, is_object, strict=True)]
    check(records, numbers, errors)
    keep = np.ones(len(records), bool)
    keep[errors.resolve(report) - 1] = False
    report.rows_read += len(records)
    return [r for r, ok in zip(records, keep, strict=True) if ok]


class _Kind(NamedTuple):
    """What a field's values must be: checked a whole column at once, value by value if not."""

    expected: str  # For the error message.
    types: frozenset[type]  # Exact types of valid values (so True is not a number).
    ok: Callable[[Any], bool] = lambda value: True  # More than the type, for one value...
    all_ok: Callable[[list], bool] = lambda values: True  # ...and for a column, fast.

    def valid(self, value: Any) -> bool:
        return type(value) in self.types and self.ok(value)

    def all_valid(self, values: list) -> bool:
        return set(map(type, values)) <= self.types and self.all_ok(values)


def _all_finite(values: list) -> bool:
    return bool(np.isfinite(np.array(values, np.float64)).all())


_NON_EMPTY = (lambda value: value != "", lambda values: "" not in values)
_NUMBER = _Kind("a finite number", frozenset({int, float}), math.isfinite, _all_finite)
_TIMESTAMP = _NUMBER._replace(expected="a finite number (unix seconds)")
_STRING = _Kind("a string", frozenset({str}))
_NAME = _Kind("a non-empty string", frozenset({str}), *_NON_EMPTY)
_ID = _Kind("a non-empty id (string or integer)", frozenset({str, int}), *_NON_EMPTY)
_USER = _ID._replace(expected=f"{_ID.expected} or null", types=_ID.types | {type(None)})
_ITEMS = _Kind("a list of {item, scores} objects", frozenset({list}))
_ITEM = _Kind("an {item, scores} object", frozenset({dict}))
_SCORES = _Kind(
    "an object of stage: finite number",
    frozenset({dict}),
    lambda scores: _NUMBER.all_valid(list(scores.values())),
    lambda column: _NUMBER.all_valid([score for scores in column for score in scores.values()]),
)
_REQUEST_FIELDS = {
    "ts": _TIMESTAMP,
    "request_id": _STRING,
    "model_version": _STRING,
    "user": _USER,
    "path": _NAME,
    "latency_ms": _NUMBER,
    "items": _ITEMS,
}


def _check_request(records: list[dict], numbers: np.ndarray, errors: RowErrors) -> None:
    for field, kind in _REQUEST_FIELDS.items():
        _check(errors, numbers, [r.get(field, _MISSING) for r in records], field, kind)
    lists = [v if type(v := r.get("items")) is list else [] for r in records]
    items = [item for served in lists for item in served]
    lines = np.repeat(numbers, [len(served) for served in lists])
    _check(errors, lines, items, "items[]", _ITEM)
    items = [item if type(item) is dict else {} for item in items]
    _check(errors, lines, [i.get("item", _MISSING) for i in items], "items[].item", _ID)
    _check(errors, lines, [i.get("scores", _MISSING) for i in items], "items[].scores", _SCORES)


def _check_outcome(records: list[dict], numbers: np.ndarray, errors: RowErrors) -> None:
    _check(errors, numbers, [r.get("user", _MISSING) for r in records], "user", _ID)
    _check(errors, numbers, [r.get("item", _MISSING) for r in records], "item", _ID)
    if any("timestamp" in r for r in records):
        timestamps = [r.get("timestamp", _MISSING) for r in records]
        _check(errors, numbers, timestamps, "timestamp", _TIMESTAMP)


def _check(errors: RowErrors, lines: np.ndarray, values: list, field: str, kind: _Kind) -> None:
    """Flags the values that aren't of `kind`, showing them as JSON."""
    if kind.all_valid(values):
        return
    bad = np.flatnonzero([not kind.valid(v) for v in values])
    found = ["(missing)" if values[i] is _MISSING else json.dumps(values[i]) for i in bad]
    errors.flag(
        np.ones(len(bad), bool), lines[bad], field, kind.expected, pa.array(found, pa.string())
    )


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _strings(values: list) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=str)


def _to_request_log(records: list[dict], report: LoadReport) -> RequestLog:
    """The log of one file's well-formed records, in file order."""
    served = [r["items"] for r in records]
    counts = np.array([len(items) for items in served], np.int64)
    items = [item for items in served for item in items]
    scores = [item["scores"] for item in items]
    stages = _funnel_order(tuple(s) for s in scores)
    request = np.repeat(np.arange(len(records)), counts)
    request_ts = np.array([r["ts"] for r in records], np.float64)
    request_user = _strings(["" if r["user"] is None else r["user"] for r in records])
    request_path = _strings([r["path"] for r in records])
    return RequestLog(
        request_ts=request_ts,
        request_id=_strings([r["request_id"] for r in records]),
        model_version=_strings([r["model_version"] for r in records]),
        request_user=request_user,
        request_path=request_path,
        latency_ms=np.array([r["latency_ms"] for r in records], np.float64),
        request=request,
        ts=request_ts[request],
        user=request_user[request],
        path=request_path[request],
        rank=np.arange(len(items)) - (np.cumsum(counts) - counts)[request] + 1,
        item=_strings([item["item"] for item in items]),
        scores={s: np.array([v.get(s, np.nan) for v in scores], np.float64) for s in stages},
        stages=stages,
        report=report,
    )


def _funnel_order(orders: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Stages by the latest position they take in any of `orders`, ties by first seen.

    The server writes scores in funnel order, so retrieval (0) < pre_ranking (1) < ranking
    (2), while a stage serving on its own (popularity, 0) sorts to the front.
    """
    position: dict[str, int] = {}
    for names in dict.fromkeys(orders):  # Distinct orders, first seen first.
        for index, name in enumerate(names):
            position[name] = max(position.get(name, index), index)
    return tuple(sorted(position, key=position.__getitem__))


def _merged(parts: list[RequestLog], report: LoadReport) -> RequestLog:
    """One log of all `parts`, requests sorted by ts (stable), items grouped by request."""

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in parts])

    request_ts = joined("request_ts")
    by_time = np.argsort(request_ts, kind="stable")
    new_index = np.empty_like(by_time)
    new_index[by_time] = np.arange(len(by_time))
    starts = np.cumsum([0] + [len(part.request_ts) for part in parts[:-1]])
    request = new_index[
        np.concatenate([part.request + start for part, start in zip(parts, starts, strict=True)])
    ]
    by_request = np.argsort(request, kind="stable")
    request = request[by_request]
    request_ts, request_user, request_path = (
        request_ts[by_time],
        joined("request_user")[by_time],
        joined("request_path")[by_time],
    )
    stages = _funnel_order(part.stages for part in parts)
    unscored = [np.full(len(part.item), np.nan) for part in parts]
    return RequestLog(
        request_ts=request_ts,
        request_id=joined("request_id")[by_time],
        model_version=joined("model_version")[by_time],
        request_user=request_user,
        request_path=request_path,
        latency_ms=joined("latency_ms")[by_time],
        request=request,
        ts=request_ts[request],
        user=request_user[request],
        path=request_path[request],
        rank=joined("rank")[by_request],
        item=joined("item")[by_request],
        scores={
            stage: np.concatenate(
                [part.scores.get(stage, nan) for part, nan in zip(parts, unscored, strict=True)]
            )[by_request]
            for stage in stages
        },
        stages=stages,
        report=report,
    )


def _read_outcome_csv(
    path: str, on_error: OnError, report: LoadReport
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    errors = RowErrors(path, on_error)
    lines = split_lines(read_text(path, errors))
    header = lines[0].as_py().removeprefix("\ufeff").split(",") if len(lines) else []
    for name in ("user", "item"):
        if name not in header:
            raise DataFormatError(
                path, 1, "header", "columns user,item[,timestamp]", ",".join(header)
            )
    fields, numbers = split_fields(lines, ",", header, "comma-separated", errors)
    fields, numbers = {name: column[1:] for name, column in fields.items()}, numbers[1:]
    for name in ("user", "item"):
        bad = ~pc.match_substring_regex(fields[name], r'^[^"]+$').to_numpy(zero_copy_only=False)
        errors.flag(bad, numbers, name, "a non-empty, unquoted id", fields[name])
    timestamp = None
    if "timestamp" in header:
        timestamp, ok = to_floats(fields["timestamp"])
        errors.flag(~ok, numbers, "timestamp", "a number (unix seconds)", fields["timestamp"])
    keep = ~np.isin(numbers, errors.resolve(report))
    report.rows_read = len(lines) - 1

    def column(name: str) -> np.ndarray:
        return np.asarray(fields[name].to_numpy(zero_copy_only=False)[keep], dtype=str)

    return column("user"), column("item"), None if timestamp is None else timestamp[keep]


# Joining and summarising.


def drift_report(
    log: RequestLog,
    outcomes: Outcomes,
    *,
    score_stage: str | None = None,
    num_buckets: int = 10,
    split_ts: float | None = None,
) -> dict[str, Any]:
    """Hit rates, calibration and score shift of served lists against outcomes (JSON-ready).

    Args:
        log: the served responses.
        outcomes: what users did afterwards.
        score_stage: the stage whose score is calibrated and compared; default: the last
            stage in the log's funnel order. None in the report when the log has no scores.
        num_buckets: equal-count calibration buckets, and PSI bins.
        split_ts: where the second window starts; default: the median request's ts.
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    if score_stage is not None and score_stage not in log.stages:
        raise ValueError(f"score stage {score_stage!r} is not in the log: {list(log.stages)}")
    stage = score_stage or (log.stages[-1] if log.stages else None)
    hit = _served_hits(log, outcomes)
    known = log.user != ""
    report: dict[str, Any] = {
        "counts": _counts(log, outcomes, hit),
        "hit_rate": {
            "overall": _hit_rate(log, hit, np.ones(len(log.request_ts), bool)),
            "by_path": {
                path: _hit_rate(log, hit, log.request_path == path)
                for path in np.unique(log.request_path).tolist()
            },
        },
        "score_stage": stage,
        "calibration": None,
        "shift": None,
    }
    if stage is not None:
        scores = log.scores[stage]
        scored = np.isfinite(scores)
        report["calibration"] = calibration(
            scores[scored & known], hit[scored & known], num_buckets
        )
        if split_ts is None:  # The log has scores, so requests.
            split_ts = float(log.request_ts[len(log.request_ts) // 2])
        report["shift"] = score_shift(scores[scored], log.ts[scored], split_ts, num_buckets)
    return report


def calibration(scores: np.ndarray, hits: np.ndarray, num_buckets: int) -> dict[str, Any]:
    """Equal-count buckets by score: mean score vs observed hit rate; ECE for probabilities.

    Items are ranked by score (stable) and cut into `num_buckets` runs of sizes that differ
    by at most one, so tied scores may straddle two buckets. ECE = Σ_b (n_b / n) |mean
    score_b - hit rate_b|, reported only when every score lies in [0, 1].
    """
    order = np.argsort(scores, kind="stable")
    buckets = [b for b in np.array_split(order, num_buckets) if len(b)]
    rows = [
        {
            "count": len(b),
            "mean_score": float(scores[b].mean()),
            "min_score": float(scores[b].min()),
            "max_score": float(scores[b].max()),
            "hit_rate": float(hits[b].mean()),
        }
        for b in buckets
    ]
    probabilities = bool(len(scores)) and bool(np.all((scores >= 0) & (scores <= 1)))
    ece = (
        sum(r["count"] * abs(r["mean_score"] - r["hit_rate"]) for r in rows) / len(scores)
        if probabilities
        else None
    )
    return {"items": len(scores), "probabilities": probabilities, "ece": ece, "buckets": rows}


def population_stability_index(expected: np.ndarray, actual: np.ndarray, num_bins: int) -> float:
    """PSI of `actual` against `expected`, binned at `expected`'s quantiles.

    Bins are cut at the interior quantiles k / num_bins of `expected` (repeated cuts
    merge) and open-ended at both sides; shares are floored at `PSI_EPSILON`.
    """
    cuts = np.unique(np.quantile(expected, np.linspace(0, 1, num_bins + 1)[1:-1]))
    shares = [
        np.maximum(
            np.bincount(np.searchsorted(cuts, x, side="right"), minlength=len(cuts) + 1) / len(x),
            PSI_EPSILON,
        )
        for x in (expected, actual)
    ]
    return float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))


def score_shift(
    scores: np.ndarray, ts: np.ndarray, split_ts: float, num_bins: int
) -> dict[str, Any]:
    """Score statistics before and after `split_ts`, and the PSI of after against before."""
    windows = [ts < split_ts, ts >= split_ts]
    stats = [
        {
            "items": int(w.sum()),
            "from_ts": float(ts[w].min()) if w.any() else None,
            "to_ts": float(ts[w].max()) if w.any() else None,
            "mean": float(scores[w].mean()) if w.any() else None,
            "std": float(scores[w].std()) if w.any() else None,
        }
        for w in windows
    ]
    both = all(w.any() for w in windows)
    psi = population_stability_index(*(scores[w] for w in windows), num_bins) if both else None
    return {"split_ts": split_ts, "windows": stats, "psi": psi, "reading": _psi_reading(psi)}


def _served_hits(log: RequestLog, outcomes: Outcomes) -> np.ndarray:
    """[N] whether each served item is among its user's outcomes (at or after the request)."""
    # Anonymous items (user "") never match: outcome users are non-empty.
    served, happened = _pair_codes(log.user, log.item, outcomes.user, outcomes.item)
    when = outcomes.timestamp if outcomes.timestamp is not None else np.full(len(happened), np.inf)
    pairs, pair_of = np.unique(happened, return_inverse=True)
    latest = np.full(len(pairs), -np.inf)
    np.maximum.at(latest, pair_of, when)
    found, at = _lookup(pairs, served)
    hit = np.zeros(len(served), bool)
    hit[found] = latest[at[found]] >= log.ts[found]
    return hit


def _lookup(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each query is in the sorted unique `keys`, and where (valid where found)."""
    at = np.minimum(np.searchsorted(keys, queries), max(len(keys) - 1, 0))
    found = keys[at] == queries if len(keys) else np.zeros(len(queries), bool)
    return found, at


def _pair_codes(
    users_a: np.ndarray, items_a: np.ndarray, users_b: np.ndarray, items_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """int64 codes of the (user, item) pairs of two tables, equal iff the pairs are."""
    users, user_codes = np.unique(np.concatenate([users_a, users_b]), return_inverse=True)
    items, item_codes = np.unique(np.concatenate([items_a, items_b]), return_inverse=True)
    codes = user_codes.astype(np.int64) * max(len(items), 1) + item_codes
    return codes[: len(users_a)], codes[len(users_a) :]


def _counts(log: RequestLog, outcomes: Outcomes, hit: np.ndarray) -> dict[str, Any]:
    known = log.request_user != ""
    users, first_index = np.unique(log.request_user[known], return_index=True)
    first_ts = log.request_ts[known][first_index]  # Requests are sorted by ts.
    joined, at = _lookup(users, outcomes.user)
    if outcomes.timestamp is not None:
        joined[joined] = outcomes.timestamp[joined] >= first_ts[at[joined]]
    versions, per_version = np.unique(log.model_version, return_counts=True)
    return {
        "requests": len(log.request_ts),
        "anonymous_requests": int((~known).sum()),
        "served_items": len(log.item),
        "users": len(users),
        "outcomes": len(outcomes.user),
        "outcomes_joined": int(joined.sum()),
        "hits": int(hit.sum()),
        "model_versions": dict(zip(versions.tolist(), per_version.tolist(), strict=True)),
        "log_lines_skipped": sum(log.report.skipped.values()),
        "outcome_lines_skipped": sum(outcomes.report.skipped.values()),
    }


def _hit_rate(log: RequestLog, hit: np.ndarray, requests: np.ndarray) -> dict[str, Any]:
    """Hit rate and precision over the chosen [R] requests that have a user."""
    chosen = requests & (log.request_user != "")
    items = chosen[log.request]
    hits_per_request = np.bincount(log.request, hit, minlength=len(chosen))
    return {
        "requests": int(chosen.sum()),
        "hit_rate": float((hits_per_request[chosen] > 0).mean()) if chosen.any() else None,
        "served_items": int(items.sum()),
        "hits": int(hit[items].sum()),
        "precision": float(hit[items].mean()) if items.any() else None,
    }


def _psi_reading(psi: float | None) -> str:
    if psi is None:
        return "undefined: a window has no scores"
    if psi < PSI_MODERATE:
        return f"stable: < {PSI_MODERATE}"
    if psi <= PSI_MAJOR:
        return f"moderate shift: {PSI_MODERATE}-{PSI_MAJOR}"
    return f"major shift: > {PSI_MAJOR}"


# Presenting.


def format_drift_report(report: Mapping[str, Any]) -> str:
    """The report as text, for people."""
    counts = report["counts"]
    versions = ", ".join(f"{v} ({n:,})" for v, n in counts["model_versions"].items())
    lines = [
        f"Requests {counts['requests']:,} ({counts['anonymous_requests']:,} without a user), "
        f"served items {counts['served_items']:,}, users {counts['users']:,}",
        f"Outcomes {counts['outcomes']:,}, joined to a logged user {counts['outcomes_joined']:,}",
        f"Model versions: {versions or '-'}",
    ]
    if counts["log_lines_skipped"] or counts["outcome_lines_skipped"]:
        lines.append(
            f"Malformed lines skipped: log {counts['log_lines_skipped']:,}, "
            f"outcomes {counts['outcome_lines_skipped']:,}"
        )
    lines += [
        "",
        "Hit rate of served lists (requests with a user)",
        f"  {'path':<14}{'requests':>10}{'hit rate':>10}{'precision':>11}",
    ]
    rates = {"all": report["hit_rate"]["overall"], **report["hit_rate"]["by_path"]}
    lines += [
        f"  {path:<14}{r['requests']:>10,}{_fmt(r['hit_rate']):>10}{_fmt(r['precision']):>11}"
        for path, r in rates.items()
    ]
    if report["score_stage"] is None:
        lines += ["", "No scores in the log: no calibration or shift."]
    calibrated = report["calibration"]
    if calibrated is not None:
        kind = (
            f"in [0, 1], read as probabilities: ECE {_fmt(calibrated['ece'])}"
            if calibrated["probabilities"]
            else "not all in [0, 1]: no ECE"
        )
        lines += [
            "",
            f"Calibration of {report['score_stage']} scores against hits ({kind})",
            f"  {'bucket':<8}{'items':>8}{'mean score':>12}{'hit rate':>10}{'range':>20}",
        ]
        lines += [
            f"  {b:<8}{r['count']:>8,}{_fmt(r['mean_score']):>12}{_fmt(r['hit_rate']):>10}"
            f"{_fmt(r['min_score']) + ' .. ' + _fmt(r['max_score']):>20}"
            for b, r in enumerate(calibrated["buckets"], start=1)
        ]
    shift = report["shift"]
    if shift is not None:
        lines += [
            "",
            f"Shift of {report['score_stage']} scores, split at ts {_fmt(shift['split_ts'], 1)}: "
            f"PSI {_fmt(shift['psi'])} ({shift['reading']})",
            f"  {'window':<8}{'items':>8}{'mean':>10}{'std':>10}{'from ts':>16}{'to ts':>16}",
        ]
        lines += [
            f"  {name:<8}{w['items']:>8,}{_fmt(w['mean']):>10}{_fmt(w['std']):>10}"
            f"{_fmt(w['from_ts'], 1):>16}{_fmt(w['to_ts'], 1):>16}"
            for name, w in zip(("before", "after"), shift["windows"], strict=True)
        ]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_drift(
    log: str,
    outcomes: str,
    *,
    score_stage: str | None,
    split_ts: float | None,
    output: str | None,
) -> dict[str, Any]:
    """Reads both files strictly, prints the text report, writes the JSON one to `output`."""
    report = drift_report(
        read_request_log(log), read_outcomes(outcomes), score_stage=score_stage, split_ts=split_ts
    )
    print(format_drift_report(report))
    if output is not None:
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return report
