"""MovieLens ratings: ml-100k `u.data`, ml-1m `ratings.dat`, ml-latest `ratings.csv`.

Each reader returns one RATING event per rating (value = the rating, timestamp = Unix
seconds) with the raw integer user and movie ids; item metadata is not read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import LoadReport, OnError
from recjax.data.sources import ColumnMapping, LoadResult
from recjax.data.sources.tabular import read_csv
from recjax.data.sources.text import (
    RowErrors,
    finish,
    parse_floats,
    parse_ints,
    read_text,
    split_fields,
    split_lines,
)

_LATEST_COLUMNS = ColumnMapping(
    user="userId", item="movieId", timestamp="timestamp", value="rating"
)


def read_movielens_100k(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads ml-100k `u.data`: `user<TAB>item<TAB>rating<TAB>unix seconds`, no header.

    Args:
        path: the `u.data` file (or another file in its format, e.g. `u1.base`), or its folder.
        on_error: "raise" on the first malformed line, or "skip" and count malformed lines.
    """
    return _read_ratings(_find(path, ("u.data",)), "\t", "tab-separated", on_error)


def read_movielens_1m(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads ml-1m `ratings.dat` (or `ratings.dat.gz`): `user::item::rating::unix seconds`.

    Args:
        path: the ratings file, or the folder holding `ratings.dat` or `ratings.dat.gz`.
        on_error: "raise" on the first malformed line, or "skip" and count malformed lines.
    """
    file = _find(path, ("ratings.dat", "ratings.dat.gz"))
    return _read_ratings(file, "::", "'::'-separated", on_error)


def read_movielens_latest(path: str | Path, *, on_error: OnError = "raise") -> LoadResult:
    """Reads ml-latest(-small) or ml-20m/25m `ratings.csv`: `userId,movieId,rating,timestamp`.

    Args:
        path: the `ratings.csv` file, or its folder.
        on_error: "raise" on the first malformed row, or "skip" and count malformed rows.
    """
    events, report = read_csv(_find(path, ("ratings.csv",)), _LATEST_COLUMNS, on_error=on_error)
    ratings = np.full(len(events), EventType.RATING, dtype=np.int8)
    return LoadResult(dataclasses.replace(events, event_type=ratings), report)


def _find(path: str | Path, names: Sequence[str]) -> str:
    """`path` itself if it is not a folder, else the first of `names` inside it."""
    path = Path(path)
    if not path.is_dir():
        return str(path)
    for name in names:
        if (path / name).is_file():
            return str(path / name)
    raise FileNotFoundError(f"{path} holds none of: {', '.join(names)}.")


def _read_ratings(path: str, separator: str, description: str, on_error: OnError) -> LoadResult:
    errors = RowErrors(path, on_error)
    lines = split_lines(read_text(path, errors))
    fields, numbers = split_fields(
        lines, separator, ("user", "item", "rating", "timestamp"), description, errors
    )
    user = parse_ints(fields["user"], numbers, "user", errors)  # Checked in file order.
    item = parse_ints(fields["item"], numbers, "item", errors)
    rating = parse_floats(fields["rating"], numbers, "rating", errors)
    timestamp = parse_ints(fields["timestamp"], numbers, "timestamp", errors)
    events = EventLog(
        user=user,
        item=item,
        timestamp=timestamp,
        value=rating.astype(np.float32),
        event_type=np.full(len(numbers), EventType.RATING, dtype=np.int8),
    )
    report = LoadReport(source=path, rows_read=len(lines))
    bad_lines = errors.resolve(report)
    return finish(events, ~np.isin(numbers, bad_lines), report)
