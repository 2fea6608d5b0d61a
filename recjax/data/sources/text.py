"""Strict, vectorised parsing of text sources: bytes -> lines -> fields -> typed columns.

Every check runs over whole columns (pyarrow.compute, numpy); each malformed row is flagged
in a `RowErrors` under its 1-based file line. `RowErrors.resolve` then raises the error of
the first bad line (`on_error="raise"`) or counts every bad line in the `LoadReport` as
skipped (`on_error="skip"`), so nothing is dropped without a count.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recjax.data.event_log import EventLog
from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources import LoadResult

_INTEGER = r"^-?\d+$"  # Casting flags the ones outside int64.
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_OFFSET = r"(Z|[+-]\d{2}(:?\d{2})?)"  # A UTC offset: Z, +hh, +hhmm or +hh:mm.
_TIME = r"\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"  # hh:mm, hh:mm:ss or hh:mm:ss.fraction.
_ISO_DATETIME = rf"^\d{{4}}-\d{{2}}-\d{{2}}([T ]{_TIME}{_OFFSET}?)?$"
_ZONED = rf"[T ].*{_OFFSET}$"  # An _ISO_DATETIME with a UTC offset.
_EXAMPLES = 5  # Skipped rows whose messages go to `LoadReport.first_skipped`.
_MAX_FOUND = 120  # Characters of the offending text kept in an error message.


class RowErrors:
    """The malformed rows of one source, flagged by vectorised checks, keyed by line."""

    def __init__(self, path: str, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")
        self.path, self.on_error = path, on_error
        self._lines: list[np.ndarray] = []  # Per check: the lines it flagged.
        self._found: list[pa.Array] = []  # Per check: the text found on those lines.
        self._what: list[tuple[str, str]] = []  # Per check: (field, expected).

    def flag(
        self, bad: np.ndarray, lines: np.ndarray, field: str, expected: str, found: pa.Array
    ) -> None:
        """Records the rows where `bad` is true; `lines` and `found` align with `bad`."""
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            self._lines.append(np.asarray(lines, dtype=np.int64)[bad])
            self._found.append(found.filter(pa.array(bad)))
            self._what.append((field, expected))

    def resolve(self, report: LoadReport, rows_per_line: np.ndarray | None = None) -> np.ndarray:
        """Raises the first bad line's error, or records all as skipped; returns the bad lines.

        A line flagged by several checks counts once, for the check that ran first.

        Args:
            report: receives the skipped counts and the first few messages.
            rows_per_line: report rows on each line (indexed by line - 1); 1 if None.
        """
        if not self._lines:
            return np.empty(0, dtype=np.int64)
        lines = np.concatenate(self._lines)
        check = np.repeat(np.arange(len(self._lines)), [len(x) for x in self._lines])
        index = np.concatenate([np.arange(len(x)) for x in self._lines])
        order = np.lexsort((check, lines))  # By line, then by the order the checks ran.
        lines, check, index = lines[order], check[order], index[order]
        first = np.r_[True, lines[1:] != lines[:-1]]
        lines, check, index = lines[first], check[first], index[first]
        if self.on_error == "raise":
            raise self._error(lines[0], check[0], index[0])
        weights = np.ones_like(lines) if rows_per_line is None else rows_per_line[lines - 1]
        for k in range(min(len(lines), _EXAMPLES)):
            report.skip(self._error(lines[k], check[k], index[k]), int(weights[k]))
        rest = np.bincount(check[_EXAMPLES:], weights[_EXAMPLES:], minlength=len(self._what))
        for c in np.flatnonzero(rest):
            k = _EXAMPLES + int(np.argmax(check[_EXAMPLES:] == c))
            report.skip(self._error(lines[k], check[k], index[k]), int(rest[c]))
        return lines

    def _error(self, line: int, check: int, index: int) -> DataFormatError:
        field, expected = self._what[check]
        found = self._found[check][int(index)].as_py()
        found = "null" if found is None else str(found)
        if len(found) > _MAX_FOUND:
            found = found[:_MAX_FOUND] + "..."
        return DataFormatError(self.path, int(line), field, expected, found)


def read_text(path: str | Path, errors: RowErrors) -> str:
    """Reads `path` (gunzipped if it ends in `.gz`) as strict UTF-8.

    Each undecodable byte run is flagged on its line under field "encoding" and replaced
    by U+FFFD, so the rest of the file is still checked.
    """
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        _flag_bad_bytes(data, errors)
        return data.decode("utf-8", errors="replace")


def _flag_bad_bytes(data: bytes, errors: RowErrors) -> None:
    # surrogateescape maps each undecodable byte b to the lone surrogate U+DC00 + b.
    text = data.decode("utf-8", errors="surrogateescape")
    points = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    bad = (points >= 0xDC80) & (points <= 0xDCFF)
    starts = np.flatnonzero(bad & ~np.r_[False, bad[:-1]])
    ends = np.flatnonzero(bad & ~np.r_[bad[1:], False]) + 1
    lines = np.cumsum(points == ord("\n"))[starts] + 1
    raw = (points - 0xDC00).astype(np.uint8)  # The original byte, at each bad position.
    found = [
        "bytes " + " ".join(f"0x{byte:02x}" for byte in raw[s:e])
        for s, e in zip(starts, ends, strict=True)
    ]
    errors.flag(np.ones(len(starts), bool), lines, "encoding", "UTF-8 text", pa.array(found))


def split_lines(text: str) -> pa.Array:
    """Splits on "\\n" (a final newline ends the last line) and drops each line's "\\r"."""
    lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
    if not text or text.endswith("\n"):
        lines = lines.slice(0, len(lines) - 1)
    return pc.utf8_rtrim(lines, characters="\r")


def split_fields(
    lines: pa.Array, separator: str, names: Sequence[str], description: str, errors: RowErrors
) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Splits headerless lines into `len(names)` fields; flags lines with another count.

    Args:
        lines: the file's lines; line k (1-based) is `lines[k - 1]`.
        separator: the literal field separator.
        names: the field names, in file order.
        description: how the separator reads in an error, e.g. "tab-separated".
        errors: receives the malformed lines.

    Returns:
        The fields of the well-formed lines by name, and those lines' numbers.
    """
    numbers = np.arange(1, len(lines) + 1)
    lists = pc.split_pattern(lines, separator)
    counts = pc.list_value_length(lists).to_numpy()
    ok = counts == len(names)
    errors.flag(~ok, numbers, "line", f"{len(names)} {description} fields", lines)
    # Taking from the flat values is far faster than filtering the lists.
    starts = (np.cumsum(counts) - counts)[ok]
    values = lists.flatten()
    return {name: values.take(starts + j) for j, name in enumerate(names)}, numbers[ok]


def _matches(strings: pa.Array, pattern: str) -> np.ndarray:
    """Whether each string matches the regex `pattern` (False for nulls)."""
    return _bools(pc.match_substring_regex(strings, pattern))


def to_ints(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Decimal integers -> (int64 values, 0 where malformed; which were well-formed)."""
    digits = _bools(pc.ascii_is_decimal(strings))  # A fast exact test for the usual case.
    ok = digits if digits.all() else _matches(strings, _INTEGER)
    values, ok = _cast_where(strings, ok, pa.int64())
    return values.fill_null(0).to_numpy(), ok


def to_floats(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Finite decimal numbers -> (float64 values, 0 where malformed; which were well-formed)."""
    try:  # Arrow reads the _NUMBER syntax plus nan/inf (dropped below); one cast is the fast path.
        values = pc.cast(strings, pa.float64())
        ok = _bools(values.is_valid())
    except pa.ArrowInvalid:
        values, ok = _cast_where(strings, _matches(strings, _NUMBER), pa.float64())
    values = values.fill_null(0).to_numpy()
    ok &= np.isfinite(values)
    return np.where(ok, values, 0.0), ok


def parse_ints(strings: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    """Decimal integers -> int64; flags anything else (0 in the result)."""
    values, ok = to_ints(strings)
    errors.flag(~ok, lines, field, "an integer (64-bit)", strings)
    return values


def parse_floats(strings: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    """Finite decimal numbers (optional sign and exponent) -> float64; flags the rest (0)."""
    values, ok = to_floats(strings)
    errors.flag(~ok, lines, field, "a number", strings)
    return values


def parse_ids(strings: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    """Raw ids: int64 if every id is an integer, else unicode; flags empty and null ids."""
    present = _bools(pc.not_equal(strings, ""))
    errors.flag(~present, lines, field, "a non-empty id", strings)
    values, is_int = to_ints(strings)
    if np.all(is_int | ~present):
        return values
    return np.asarray(pc.fill_null(strings, "").to_numpy(zero_copy_only=False), dtype=str)


def parse_timestamps(
    strings: pa.Array, lines: np.ndarray, field: str, errors: RowErrors
) -> np.ndarray:
    """Integer seconds or ISO 8601 date-times -> int64 seconds since the epoch.

    A date-time without a UTC offset is taken as UTC; sub-second parts are floored.
    """
    seconds, is_int = to_ints(strings)
    is_iso = ~is_int & _matches(strings, _ISO_DATETIME)
    if is_iso.any():
        zoned = is_iso & _matches(strings, _ZONED)
        naive_us, naive_ok = _cast_where(strings, is_iso & ~zoned, pa.timestamp("us"))
        zoned_us, zoned_ok = _cast_where(strings, zoned, pa.timestamp("us", tz="UTC"))
        micros = np.where(zoned, _int64(zoned_us), _int64(naive_us))
        is_iso = naive_ok | zoned_ok
        seconds = np.where(is_iso, micros // 1_000_000, seconds)
    errors.flag(
        ~(is_int | is_iso), lines, field, "integer seconds or an ISO 8601 date-time", strings
    )
    return seconds


def _bools(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _int64(timestamps: pa.Array) -> np.ndarray:
    return pc.cast(timestamps, pa.int64()).fill_null(0).to_numpy()


def _cast_where(strings: pa.Array, ok: np.ndarray, to: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Casts the strings where `ok` (null elsewhere); clears `ok` where the cast fails."""
    values = _cast_each(strings if ok.all() else pc.if_else(ok, strings, None), to)
    return values, ok & _bools(values.is_valid())


def _cast_each(strings: pa.Array, to: pa.DataType) -> pa.Array:
    """Casts `strings`, with null where a value can't be cast (e.g. "2021-02-30", 2**70).

    The whole-array cast fails on any bad value; halving the failing part finds them.
    """
    try:
        return pc.cast(strings, to)
    except pa.ArrowInvalid:
        if len(strings) == 1:
            return pa.nulls(1, to)
        half = len(strings) // 2
        return pa.concat_arrays(
            [_cast_each(strings.slice(0, half), to), _cast_each(strings.slice(half), to)]
        )


def finish(events: EventLog, keep: np.ndarray, report: LoadReport) -> LoadResult:
    """Keeps the well-formed rows, counts them and checks that every row is accounted for."""
    events = events.take(keep)
    report.events = len(events)
    report.check_balanced()
    return LoadResult(events, report)
