"""Generic event tables: a CSV or Parquet file plus a `ColumnMapping` naming its columns.

Column rules (both formats):
- user/item: integers -> int64 ids, anything else -> unicode ids; empty or null is malformed.
- timestamp: integer seconds, a timestamp/date column, or ISO 8601 strings -> int64 seconds.
- value: numbers (1.0 when unmapped). event_type: `EventType` names (any case) or values
  (INTERACTION when unmapped).
- features: kept per event (CSV text becomes int64 or float64 where every value parses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources import ColumnMapping, LoadResult
from recjax.data.sources.text import (
    RowErrors,
    finish,
    parse_floats,
    parse_ids,
    parse_timestamps,
    read_text,
    split_lines,
    to_floats,
    to_ints,
)

_EVENT_TYPES = ", ".join(f"{t.name} ({t.value})" for t in EventType)


def read_csv(
    path: str | Path, columns: ColumnMapping, *, on_error: OnError = "raise"
) -> LoadResult:
    """Reads a UTF-8, comma-separated file with a header row into events.

    Values may be quoted ("a, b"), but not span lines: each file line is one row, and
    errors name that line. Lines end with "\\n" or "\\r\\n".

    Args:
        path: the CSV file (gzip if it ends in `.gz`).
        columns: which header names hold the event fields.
        on_error: "raise" on the first malformed row, or "skip" and count malformed rows.
    """
    path = str(path)
    errors = RowErrors(path, on_error)
    text = read_text(path, errors)
    lines = split_lines(text)
    header = _csv_header(path, lines)
    wanted = _wanted(columns)
    _require(path, 1, wanted, header)
    invalid: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(text.encode()),
        read_options=pacsv.ReadOptions(use_threads=False),  # Keeps InvalidRow.number.
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            include_columns=wanted,
            column_types=dict.fromkeys(wanted, pa.large_string()),
            strings_can_be_null=False,
        ),
    )
    # pyarrow skips empty lines and numbers the others 1, 2, ... (the header is 1).
    numbers = np.arange(1, len(lines) + 1)
    empty = (pc.utf8_length(lines).to_numpy() == 0) & (numbers > 1)
    nonempty_lines = numbers[~empty]
    expected = f"{len(header)} comma-separated fields"
    errors.flag(empty, numbers, "line", expected, lines)
    invalid_lines = nonempty_lines[np.array([row.number for row in invalid], dtype=np.int64) - 1]
    errors.flag(
        np.ones(len(invalid), bool),
        invalid_lines,
        "line",
        expected,
        pa.array([row.text for row in invalid], pa.large_string()),
    )
    row_lines = np.setdiff1d(nonempty_lines[1:], invalid_lines)
    report = LoadReport(source=path, rows_read=len(lines) - 1)
    return _to_events(table, columns, row_lines, errors, report)


def read_parquet(
    path: str | Path, columns: ColumnMapping, *, on_error: OnError = "raise"
) -> LoadResult:
    """Reads a Parquet table into events; errors name the 1-based row as the "line".

    Args:
        path: the Parquet file.
        columns: which columns hold the event fields.
        on_error: "raise" on the first malformed row, or "skip" and count malformed rows.
    """
    path = str(path)
    wanted = _wanted(columns)
    _require(path, None, wanted, pq.read_schema(path).names)
    table = pq.read_table(path, columns=wanted)
    report = LoadReport(source=path, rows_read=table.num_rows)
    rows = np.arange(1, table.num_rows + 1)
    return _to_events(table, columns, rows, RowErrors(path, on_error), report)


def _csv_header(path: str, lines: pa.Array) -> list[str]:
    if len(lines) == 0 or not lines[0].as_py():
        raise DataFormatError(path, 1, "header", "a header row of column names", "")
    return pacsv.open_csv(pa.BufferReader(lines[0].as_py().encode() + b"\n")).schema.names


def _wanted(columns: ColumnMapping) -> list[str]:
    names = (
        columns.user,
        columns.item,
        columns.timestamp,
        columns.value,
        columns.event_type,
        *columns.features,
    )
    return list(dict.fromkeys(name for name in names if name is not None))


def _require(path: str, line: int | None, wanted: list[str], found: list[str]) -> None:
    for name in wanted:
        if name not in found:
            raise DataFormatError(
                path, line, name, f"a column named {name!r}", "columns " + ", ".join(found)
            )


def _to_events(
    table: pa.Table,
    columns: ColumnMapping,
    lines: np.ndarray,
    errors: RowErrors,
    report: LoadReport,
) -> LoadResult:
    """Checks and converts the mapped columns; `lines` numbers the table's rows."""

    def column(name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    n = table.num_rows
    user = _ids(column(columns.user), lines, columns.user, errors)
    item = _ids(column(columns.item), lines, columns.item, errors)
    timestamp = _timestamps(column(columns.timestamp), lines, columns.timestamp, errors)
    value = (
        np.ones(n)
        if columns.value is None
        else _numbers(column(columns.value), lines, columns.value, errors)
    )
    event_type = (
        np.full(n, EventType.INTERACTION)
        if columns.event_type is None
        else _event_types(column(columns.event_type), lines, columns.event_type, errors)
    )
    events = EventLog(
        user=user,
        item=item,
        timestamp=timestamp,
        event_type=event_type.astype(np.int8),
        value=value.astype(np.float32),
        features={name: _feature(column(name)) for name in columns.features},
    )
    bad_lines = errors.resolve(report)
    return finish(events, ~np.isin(lines, bad_lines), report)


def _integral(
    values: pa.Array, lines: np.ndarray, field: str, expected: str, errors: RowErrors
) -> np.ndarray:
    """An integer or float column -> int64; flags nulls, NaN and fractions."""
    ok = pc.fill_null(
        pc.equal(pc.floor(values), values)
        if pa.types.is_floating(values.type)
        else pc.is_valid(values),
        False,
    ).to_numpy(zero_copy_only=False)
    errors.flag(~ok, lines, field, expected, values.cast(pa.large_string()))
    return pc.cast(pc.if_else(ok, values, 0), pa.int64(), safe=False).to_numpy()


def _is_numeric(values: pa.Array) -> bool:
    return pa.types.is_integer(values.type) or pa.types.is_floating(values.type)


def _ids(values: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    if _is_numeric(values):
        return _integral(values, lines, field, "an integer id", errors)
    return parse_ids(values.cast(pa.large_string()), lines, field, errors)


def _timestamps(values: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    if _is_numeric(values):
        return _integral(values, lines, field, "integer seconds", errors)
    if pa.types.is_date(values.type):
        values = values.cast(pa.timestamp("s"))
    if pa.types.is_timestamp(values.type):
        ok = values.is_valid().to_numpy(zero_copy_only=False)
        errors.flag(~ok, lines, field, "a timestamp", values.cast(pa.large_string()))
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[values.type.unit]
        return pc.cast(values, pa.int64()).fill_null(0).to_numpy() // per_second
    return parse_timestamps(values.cast(pa.large_string()), lines, field, errors)


def _numbers(values: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    if _is_numeric(values):
        ok = values.is_valid().to_numpy(zero_copy_only=False)
        errors.flag(~ok, lines, field, "a number", values.cast(pa.large_string()))
        return pc.cast(values, pa.float64()).fill_null(0).to_numpy()
    return parse_floats(values.cast(pa.large_string()), lines, field, errors)


def _event_types(values: pa.Array, lines: np.ndarray, field: str, errors: RowErrors) -> np.ndarray:
    """`EventType` names (any case) or integer values -> their values; flags the rest."""
    strings = values.cast(pa.large_string())
    codes = np.array([t.value for t in EventType])
    named = pc.index_in(pc.utf8_upper(strings), value_set=pa.array([t.name for t in EventType]))
    by_name = codes[named.fill_null(0).to_numpy()]
    by_value, is_int = to_ints(strings)
    is_named = named.is_valid().to_numpy(zero_copy_only=False)
    ok = is_named | (is_int & np.isin(by_value, codes))
    errors.flag(~ok, lines, field, f"an event type: {_EVENT_TYPES}", strings)
    return np.where(is_named, by_name, np.where(ok, by_value, 0))


def _feature(values: pa.Array) -> np.ndarray:
    """Text -> int64 or float64 where every value parses; other types as they are."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        for parse in (to_ints, to_floats):
            parsed, ok = parse(values)
            if ok.all():
                return parsed
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=str)
    return values.to_numpy(zero_copy_only=False)
