"""Drift report: served lists (request log) joined with outcomes.

A served item is a *hit* when its user has it among their outcomes (at or after the
request's ts when outcomes have timestamps). Requests without a user can't be joined:
they are counted, but not in hit rates or calibration.

The report has hit rates (per response and per served item), calibration of one stage's
score against hits, and that score's shift between two time windows as a population
stability index: PSI = Σ_b (q_b - p_b) ln(q_b / p_b) over bins b of the first window's
quantiles, p and q the two windows' shares. Usual reading: < 0.1 stable, 0.1-0.25 moderate
shift, > 0.25 major shift.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recjax.serving.request_log import Outcomes, RequestLog, read_outcomes, read_request_log

PSI_MODERATE = 0.1  # PSI from here on reads as a moderate shift...
PSI_MAJOR = 0.25  # ...and from here on as a major one.
PSI_EPSILON = 1e-4  # Floor on a bin's share, so an empty bin gives a large, finite term.


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
