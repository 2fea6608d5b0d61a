"""Reader for EB-NeRD (Ekstra Bladet News Recommendation Dataset, Kruse et al. 2024).

`behaviors.parquet` has one row per impression: the articles in view, the one(s)
clicked, and the dwell on the clicked article (`next_read_time`, seconds). The reader
expands it into one INTERACTION event per (impression, in-view article), value =
clicked (0 or 1); the report's rows are these pairs, so a malformed impression counts
once per article it showed. Per-event features:
  impression_id, session_id, inview_index (0-based place in `article_ids_inview`; the
    data does not say this is a display position, so it is kept only for reference),
  dwell, scroll: `next_read_time` / `next_scroll_percentage` on clicked articles; NaN
    on the others and where the log has none (dwell exists only after a click),
  page: the article whose page showed the impression (-1 = the front page),
  device_type, age, gender, postcode, is_subscriber, is_sso_user (-1 = unknown).

`history.parquet` has one row per user with aligned lists of earlier clicks: one
INTERACTION event per click, value = read time (s), feature `scroll` (NaN if none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources import LoadResult
from recjax.data.sources.text import RowErrors

BEHAVIORS, HISTORY = "behaviors.parquet", "history.parquet"
_INT_LIST = "a list of int article ids"
_BEHAVIOR_COLUMNS = {
    "impression_id": "integer",
    "article_id": "integer",
    "impression_time": "timestamp",
    "device_type": "integer",
    "article_ids_inview": _INT_LIST,
    "article_ids_clicked": _INT_LIST,
    "user_id": "integer",
    "is_sso_user": "bool",
    "gender": "integer",
    "postcode": "integer",
    "age": "integer",
    "is_subscriber": "bool",
    "session_id": "integer",
    "next_read_time": "floating",
    "next_scroll_percentage": "floating",
}
_HISTORY_COLUMNS = {
    "user_id": "integer",
    "impression_time_fixed": "a list of timestamps",
    "scroll_percentage_fixed": "a list of floats",
    "article_id_fixed": _INT_LIST,
    "read_time_fixed": "a list of floats",
}
_REQUIRED = ("impression_id", "impression_time", "user_id", "session_id")
_CONTEXT = ("device_type", "age", "gender", "postcode", "is_subscriber", "is_sso_user")


def _type_ok(found: pa.DataType, expected: str) -> bool:
    value = found.value_type if pa.types.is_list(found) or pa.types.is_large_list(found) else None
    return {
        "integer": pa.types.is_integer(found),
        "floating": pa.types.is_floating(found),
        "bool": pa.types.is_boolean(found),
        "timestamp": pa.types.is_timestamp(found),
        _INT_LIST: value is not None and pa.types.is_integer(value),
        "a list of timestamps": value is not None and pa.types.is_timestamp(value),
        "a list of floats": value is not None and pa.types.is_floating(value),
    }[expected]


def _open(path: str | Path, name: str, columns: dict[str, str]) -> tuple[str, pa.Table]:
    """The table `name` (in folder `path`, or `path` itself), schema checked."""
    path = Path(path)
    file = path / name if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"EB-NeRD file not found: {file}")
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as error:
        raise DataFormatError(
            str(file), None, "file", "a readable Parquet file", str(error).splitlines()[0]
        ) from None
    for column, expected in columns.items():
        if column not in table.column_names:
            raise DataFormatError(
                str(file), None, column, "a column of that name", f"columns {table.column_names}"
            )
        found = table.schema.field(column).type
        if not _type_ok(found, expected):
            raise DataFormatError(str(file), None, column, f"{expected} column", str(found))
    return str(file), table


def _seconds(values: pa.Array) -> np.ndarray:
    return pc.cast(pc.cast(values, pa.timestamp("s")), pa.int64()).fill_null(0).to_numpy()


def _ints(values: pa.Array, missing: int = -1) -> np.ndarray:
    return pc.cast(values, pa.int64()).fill_null(missing).to_numpy()


def _floats(values: pa.Array) -> np.ndarray:
    return pc.cast(values, pa.float32()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def _texts(values: pa.ChunkedArray) -> pa.Array:
    """Each value as text, for error messages (lists included)."""
    return pa.array(["null" if v is None else str(v) for v in values.to_pylist()])


def _flag_nulls(table: pa.Table, columns: tuple[str, ...], rows: np.ndarray, errors: RowErrors):
    for column in columns:
        null = pc.is_null(table[column]).to_numpy(zero_copy_only=False)
        errors.flag(null, rows, column, "a value", pa.array(["null"] * len(rows)))


def read_ebnerd(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads `behaviors.parquet` (the file, or its folder) into (impression, article) events.

    Errors name the 1-based table row. A row is malformed if a required value is null,
    no article was in view, a clicked article was not in view, or a dwell is negative.
    """
    file, table = _open(path, BEHAVIORS, _BEHAVIOR_COLUMNS)
    errors = RowErrors(file, on_error)
    rows = np.arange(1, table.num_rows + 1)
    inview, clicked = table["article_ids_inview"], table["article_ids_clicked"]
    _flag_nulls(table, _REQUIRED + ("article_ids_inview", "article_ids_clicked"), rows, errors)
    counts = pc.list_value_length(inview).fill_null(0).to_numpy()
    errors.flag(counts == 0, rows, "article_ids_inview", "a non-empty list", _texts(inview))
    # Pairs (impression row, article) of every in-view article, and whether it was clicked.
    pair_row = np.repeat(np.arange(table.num_rows), counts)
    pair_item = _ints(pc.list_flatten(inview))
    inview_index = np.arange(len(pair_row)) - np.repeat(np.cumsum(counts) - counts, counts)
    click_counts = pc.list_value_length(clicked).fill_null(0).to_numpy()
    click_row = np.repeat(np.arange(table.num_rows), click_counts)
    click_key = click_row.astype(np.int64) << 32 | _ints(pc.list_flatten(clicked)) & 0xFFFFFFFF
    pair_key = pair_row.astype(np.int64) << 32 | pair_item & 0xFFFFFFFF
    stray = ~np.isin(click_key, pair_key)
    errors.flag(
        np.bincount(click_row[stray], minlength=table.num_rows) > 0,
        rows,
        "article_ids_clicked",
        "articles listed in article_ids_inview",
        _texts(clicked),
    )
    dwell_row = _floats(table["next_read_time"])
    errors.flag(
        dwell_row < 0,
        rows,
        "next_read_time",
        "seconds >= 0",
        _texts(table["next_read_time"]),
    )
    weights = np.maximum(counts, 1)
    report = LoadReport(source=file, rows_read=int(weights.sum()))
    bad_rows = errors.resolve(report, rows_per_line=weights)

    is_click = np.isin(pair_key, click_key)
    page = _ints(table["article_id"])
    events = EventLog(
        user=_ints(table["user_id"])[pair_row],
        item=pair_item,
        timestamp=_seconds(table["impression_time"])[pair_row],
        event_type=np.full(len(pair_row), EventType.INTERACTION, np.int8),
        value=is_click.astype(np.float32),
        features={
            "impression_id": _ints(table["impression_id"])[pair_row],
            "session_id": _ints(table["session_id"])[pair_row],
            "inview_index": inview_index,
            "dwell": np.where(is_click, dwell_row[pair_row], np.nan).astype(np.float32),
            "scroll": np.where(
                is_click, _floats(table["next_scroll_percentage"])[pair_row], np.nan
            ).astype(np.float32),
            "page": page[pair_row],
            **{name: _ints(table[name])[pair_row] for name in _CONTEXT},
        },
    )
    keep = ~np.isin(pair_row + 1, bad_rows)
    events = events.take(keep)
    report.events = len(events)
    report.check_balanced()
    return LoadResult(events, report)


def read_ebnerd_history(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads `history.parquet` (the file, or its folder): one event per earlier click.

    The report's rows are clicks; a user row whose lists differ in length, or hold a
    null article or time, is malformed as a whole.
    """
    file, table = _open(path, HISTORY, _HISTORY_COLUMNS)
    errors = RowErrors(file, on_error)
    rows = np.arange(1, table.num_rows + 1)
    _flag_nulls(table, tuple(_HISTORY_COLUMNS), rows, errors)
    lengths = {
        name: pc.list_value_length(table[name]).fill_null(0).to_numpy()
        for name in _HISTORY_COLUMNS
        if name != "user_id"
    }
    counts = lengths["article_id_fixed"]
    for name, length in lengths.items():
        errors.flag(
            length != counts,
            rows,
            name,
            f"as many entries as article_id_fixed ({', '.join(map(str, counts[:1]))}...)",
            pa.array([f"{n} entries" for n in length]),
        )
    ok_lengths = np.all([length == counts for length in lengths.values()], axis=0)
    flat = {
        name: pc.list_flatten(table[name].filter(pa.array(ok_lengths)))
        for name in ("impression_time_fixed", "article_id_fixed")
    }
    row_of = np.repeat(np.flatnonzero(ok_lengths), counts[ok_lengths])
    for name, values in flat.items():
        null = pc.is_null(values).to_numpy(zero_copy_only=False)
        bad = np.bincount(row_of[null], minlength=table.num_rows) > 0
        errors.flag(bad, rows, name, "no null entries", pa.array(["a null entry"] * len(rows)))
    weights = np.maximum(counts, 1)
    report = LoadReport(source=file, rows_read=int(weights.sum()))
    bad_rows = errors.resolve(report, rows_per_line=weights)

    events = EventLog(
        user=_ints(table["user_id"])[row_of],
        item=_ints(flat["article_id_fixed"]),
        timestamp=_seconds(flat["impression_time_fixed"]),
        event_type=np.full(len(row_of), EventType.INTERACTION, np.int8),
        value=_floats(pc.list_flatten(table["read_time_fixed"].filter(pa.array(ok_lengths)))),
        features={
            "scroll": _floats(
                pc.list_flatten(table["scroll_percentage_fixed"].filter(pa.array(ok_lengths)))
            )
        },
    )
    events = events.take(~np.isin(row_of + 1, bad_rows))
    report.events = len(events)
    report.check_balanced()
    return LoadResult(events, report)
