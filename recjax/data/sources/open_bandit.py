"""Reader for the Open Bandit Dataset (ZOZOTOWN fashion e-commerce, Saito et al. 2021).

Layout: `<policy>/<campaign>/<campaign>.csv` (policy `random` or `bts`, campaign `all`,
`men` or `women`) with `item_context.csv` beside each. A log row is one impression:
`,timestamp,item_id,position,click,propensity_score,user_feature_0..3,
user-item_affinity_0..K-1` (the first, unnamed column is a pandas row index).

One INTERACTION event per impression, value = click (0 or 1). The logs have no user
id: `user` is the user's feature segment (the four hashed user features joined by
"|"), the finest identity the data has. Items are named "<campaign>/<item_id>", since
each campaign numbers its own catalogue from 0.
Per-event features: `position` (1-3), `propensity` (the logging policy's probability
of the shown item), `user_feature_0..3`, `affinity` (the user's affinity with the shown
item), the item's `item_feature_0` (number) and `item_feature_1..3` (hashed
categories), `campaign` and `policy`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources import LoadResult
from recjax.data.sources.text import (
    RowErrors,
    parse_floats,
    parse_ids,
    parse_ints,
    parse_timestamps,
    read_text,
    split_fields,
    split_lines,
)

ITEM_CONTEXT = "item_context.csv"
POSITIONS = (1, 2, 3)  # Left, centre and right slot of the ZOZOTOWN page.
_USER_FEATURES = tuple(f"user_feature_{k}" for k in range(4))
_LOG_COLUMNS = ("", "timestamp", "item_id", "position", "click", "propensity_score")
_AFFINITY = "user-item_affinity_"
_CONTEXT_COLUMNS = ("", "item_id", *(f"item_feature_{k}" for k in range(4)))


def read_open_bandit(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads one campaign log, or every `<campaign>.csv` under a folder (sorted by path).

    Args:
        path: a campaign CSV, or a folder holding them at any depth (each beside its
            `item_context.csv`).
        on_error: "raise" on the first malformed log row, or "skip" and count them.
            A malformed `item_context.csv` always raises: it describes every row.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Open Bandit data not found: {path}")
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*.csv") if p.name != ITEM_CONTEXT)
    )
    if not files:
        raise FileNotFoundError(f"{path} holds no Open Bandit campaign .csv file.")
    report = LoadReport(source=str(path))
    logs = [_read_campaign(file, on_error, report) for file in files]
    events = EventLog(
        **{
            name: np.concatenate([getattr(log, name) for log in logs])
            for name in ("user", "item", "timestamp", "event_type", "value")
        },
        features={
            name: np.concatenate([log.features[name] for log in logs]) for name in logs[0].features
        },
    )
    report.events = len(events)
    report.check_balanced()
    return LoadResult(events, report)


def _read_header(file: Path, lines: pa.Array, fixed: tuple[str, ...], repeated: str) -> list[str]:
    """The header's names; `fixed` first, then `repeated`0, 1, ... (if `repeated`)."""
    found = lines[0].as_py().split(",") if len(lines) else []
    expected = list(fixed)
    if repeated:
        expected += [f"{repeated}{k}" for k in range(len(found) - len(fixed))]
    if found[: len(fixed)] != list(fixed) or found != expected:
        described = ",".join(fixed) + (f",{repeated}0..K-1" if repeated else "")
        raise DataFormatError(str(file), 1, "header", described, ",".join(found))
    return found


def _read_item_context(file: Path) -> dict[str, np.ndarray]:
    """item_id [K] and its four features, from `item_context.csv` (strict)."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (every campaign log needs its items).")
    errors = RowErrors(str(file), "raise")
    lines = split_lines(read_text(file, errors))
    _read_header(file, lines, _CONTEXT_COLUMNS, "")
    fields, numbers = split_fields(lines, ",", _CONTEXT_COLUMNS, "comma-separated", errors)
    rows = numbers > 1
    fields = {name: values.filter(pa.array(rows)) for name, values in fields.items()}
    numbers = numbers[rows]
    context = {
        "item_id": parse_ints(fields["item_id"], numbers, "item_id", errors),
        "item_feature_0": parse_floats(
            fields["item_feature_0"], numbers, "item_feature_0", errors
        ).astype(np.float32),
    }
    for k in (1, 2, 3):
        name = f"item_feature_{k}"
        context[name] = parse_ids(fields[name], numbers, name, errors).astype(str)
    errors.resolve(LoadReport(source=str(file)))
    return context


def _read_campaign(file: Path, on_error: OnError, report: LoadReport) -> EventLog:
    """One campaign log's well-formed rows; counts its rows and skipped rows in `report`."""
    errors = RowErrors(str(file), on_error)
    lines = split_lines(read_text(file, errors))
    header = _read_header(file, lines, _LOG_COLUMNS + _USER_FEATURES, _AFFINITY)
    context = _read_item_context(file.parent / ITEM_CONTEXT)
    fields, numbers = split_fields(lines, ",", header, "comma-separated", errors)
    rows = numbers > 1
    fields = {name: values.filter(pa.array(rows)) for name, values in fields.items()}
    numbers = numbers[rows]

    timestamp = parse_timestamps(fields["timestamp"], numbers, "timestamp", errors)
    item_id = parse_ints(fields["item_id"], numbers, "item_id", errors)
    known = np.isin(item_id, context["item_id"])
    errors.flag(~known, numbers, "item_id", f"an item of {ITEM_CONTEXT}", fields["item_id"])
    position = parse_ints(fields["position"], numbers, "position", errors)
    errors.flag(~np.isin(position, POSITIONS), numbers, "position", "1, 2 or 3", fields["position"])
    click = parse_ints(fields["click"], numbers, "click", errors)
    errors.flag(~np.isin(click, (0, 1)), numbers, "click", "0 or 1", fields["click"])
    propensity = parse_floats(fields["propensity_score"], numbers, "propensity_score", errors)
    errors.flag(
        ~((propensity > 0) & (propensity <= 1)),
        numbers,
        "propensity_score",
        "a probability in (0, 1]",
        fields["propensity_score"],
    )
    segments = [
        parse_ids(fields[name], numbers, name, errors).astype(str) for name in _USER_FEATURES
    ]
    num_affinities = len(header) - len(_LOG_COLUMNS) - len(_USER_FEATURES)
    affinity_nk = np.stack(
        [
            parse_floats(fields[f"{_AFFINITY}{k}"], numbers, f"{_AFFINITY}{k}", errors)
            for k in range(num_affinities)
        ],
        axis=1,
    )
    shown = np.clip(item_id, 0, num_affinities - 1)
    errors.flag(
        item_id >= num_affinities,
        numbers,
        "item_id",
        f"an item with an affinity column (< {num_affinities})",
        fields["item_id"],
    )
    report.rows_read += len(numbers)
    bad_lines = errors.resolve(report)
    keep = ~np.isin(numbers, bad_lines)

    campaign, policy = file.stem, file.parent.parent.name
    by_id = np.argsort(context["item_id"])
    found = np.searchsorted(context["item_id"], item_id, sorter=by_id)
    context_row = by_id[np.minimum(found, len(by_id) - 1)]  # Unknown items are dropped below.
    user = segments[0]
    for segment in segments[1:]:
        user = np.char.add(np.char.add(user, "|"), segment)
    n = len(numbers)
    events = EventLog(
        user=user,
        item=np.char.add(f"{campaign}/", item_id.astype(str)),
        timestamp=timestamp,
        event_type=np.full(n, EventType.INTERACTION, np.int8),
        value=click.astype(np.float32),
        features={
            "position": position,
            "propensity": propensity.astype(np.float32),
            **dict(zip(_USER_FEATURES, segments, strict=True)),
            "affinity": affinity_nk[np.arange(n), shown].astype(np.float32),
            **{name: context[name][context_row] for name in _CONTEXT_COLUMNS[2:]},
            "campaign": np.full(n, campaign),
            "policy": np.full(n, policy),
        },
    )
    return events.take(keep)
