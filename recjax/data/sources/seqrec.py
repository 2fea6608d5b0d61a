"""S3-Rec sequence files (`Beauty.txt`, `Yelp.txt`...): one user's items per line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import LoadReport, OnError
from recjax.data.sources import LoadResult
from recjax.data.sources.text import RowErrors, finish, parse_ints, read_text, split_lines


def read_seqrec(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads `user item item ...` lines (space-separated integers, items oldest first).

    The files keep no times, so each event's timestamp is an ordinal: its 0-based position
    in the user's line (0, 1, 2, ...), not seconds. Events are INTERACTIONs with value 1.
    A report row is one (user, item) entry; a malformed line is skipped whole and counts
    as its entries (at least one).

    Args:
        path: the sequence file (gzip if it ends in `.gz`).
        on_error: "raise" on the first malformed line, or "skip" and count malformed lines.
    """
    path = str(path)
    errors = RowErrors(path, on_error)
    lines = split_lines(read_text(path, errors))
    numbers = np.arange(1, len(lines) + 1)
    tokens = pc.split_pattern(lines, " ")
    counts = pc.list_value_length(tokens).to_numpy()
    errors.flag(
        counts < 2, numbers, "line", "a user id and at least one item id, space-separated", lines
    )
    # Token k of the flattened lists sits on line parent[k] + 1, at position[k] in that line.
    parent = pc.list_parent_indices(tokens).to_numpy()
    position = np.arange(len(parent)) - (np.cumsum(counts) - counts)[parent]
    is_item = position > 0
    flat = tokens.flatten()
    user = parse_ints(flat.filter(pa.array(~is_item)), numbers, "user", errors)
    item_lines = numbers[parent[is_item]]
    item = parse_ints(flat.filter(pa.array(is_item)), item_lines, "item", errors)
    entries = np.maximum(counts - 1, 1)
    report = LoadReport(source=path, rows_read=int(entries.sum()))
    report.note("lines (users)", len(lines))
    bad_lines = errors.resolve(report, rows_per_line=entries)
    events = EventLog(
        user=np.repeat(user, counts - 1),
        item=item,
        timestamp=position[is_item] - 1,
        event_type=np.full(len(item), EventType.INTERACTION, dtype=np.int8),
        value=np.ones(len(item), dtype=np.float32),
    )
    return finish(events, ~np.isin(item_lines, bad_lines), report)
