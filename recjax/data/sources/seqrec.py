"""S3-Rec sequence files (`Beauty.txt`, `Yelp.txt`...): one user's items per line, and
their item attributes (`Beauty_item2attributes.json`: categories and brand, Yelp
categories, LastFM tags) when that file sits beside the sequence file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources import LoadResult
from recjax.data.sources.text import RowErrors, finish, parse_ints, read_text, split_lines


def read_seqrec(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads `user item item ...` lines (space-separated integers, items oldest first).

    The files keep no times, so each event's timestamp is an ordinal: its 0-based position
    in the user's line (0, 1, 2, ...), not seconds. Events are INTERACTIONs with value 1.
    A report row is one (user, item) entry; a malformed line is skipped whole and counts
    as its entries (at least one). With `<stem>_item2attributes.json` beside the file,
    each event carries its item's attribute ids as the `attributes` feature (a
    space-separated string, "" for an item the file does not list: counted in the report);
    `ExampleConfig(text_feature="attributes")` turns them into item tokens.

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
    attributes_path = attributes_file(path)
    features = {}
    if attributes_path.exists():
        attributes = read_item_attributes(attributes_path)
        catalogue, item_row = np.unique(item, return_inverse=True)
        per_item = np.asarray([attributes.get(int(i), "") for i in catalogue], dtype=object)
        features["attributes"] = per_item[item_row]
        report.note("items without attributes", int((per_item == "").sum()))
    events = EventLog(
        user=np.repeat(user, counts - 1),
        item=item,
        timestamp=position[is_item] - 1,
        event_type=np.full(len(item), EventType.INTERACTION, dtype=np.int8),
        value=np.ones(len(item), dtype=np.float32),
        features=features,
    )
    return finish(events, ~np.isin(item_lines, bad_lines), report)


def attributes_file(sequence_path: str | Path) -> Path:
    """`Beauty_item2attributes.json` for `Beauty.txt` (or `Beauty.txt.gz`)."""
    path = Path(sequence_path)
    stem = path.name.removesuffix(".gz").removesuffix(".txt")
    return path.with_name(f"{stem}_item2attributes.json")


def read_item_attributes(path: str | Path) -> dict[int, str]:
    """`{"item id": [attribute id, ...]}` → {item id: "a1 a2 ..."} (the file's order).

    Raises `DataFormatError` naming the file (and line for invalid JSON), the item and
    what was expected.
    """
    path = str(path)
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFormatError(path, error.lineno, "json", "a JSON object", error.msg) from None
    if not isinstance(mapping, dict):
        raise DataFormatError(
            path, None, "json", "an object of item id -> attribute ids", type(mapping).__name__
        )
    attributes = {}
    for key, values in mapping.items():
        if re.fullmatch(r"-?\d+", key) is None:
            raise DataFormatError(path, None, "item id", "an integer (as a string)", key)
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise DataFormatError(
                path, None, f"attributes of item {key}", "a list of integer ids", str(values)
            )
        attributes[int(key)] = " ".join(str(v) for v in values)
    return attributes
