"""Reading the request log (hybrid logging's online half) and the outcomes joined to it.

The request log is JSON Lines, one served response per line, rotated by the server
(`requests.jsonl` is the newest, then `.1`, `.2`, ...). Fields read here:

    ts (unix seconds), request_id, model_version, user (id or null), path, latency_ms,
    items: [{"item": id, "scores": {stage: score, ...}}, ...]   (in served order)

Other fields (k, stages, ...) are ignored. Scores are NaN where a stage gave none.

Outcomes are the interactions that actually happened (e.g. held-out test events): a CSV
with a `user,item[,timestamp]` header or JSON Lines with those fields. Ids are compared as
strings. Malformed lines stop with a DataFormatError naming file, line and field (or are
counted as skipped with on_error="skip").
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
