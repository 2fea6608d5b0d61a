"""MovieLens through TensorFlow Datasets (the optional `recjax[tfds]` extra; downloads)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import LoadReport
from recjax.data.sources import LoadResult
from recjax.data.sources.text import RowErrors, finish, parse_ids


def load_movielens(name: str = "100k-ratings") -> LoadResult:
    """Loads a `movielens/<name>` ratings config of TFDS as RATING events.

    Reads the whole train split in one batch (`batch_size=-1`); ids become int64 when they
    are all integers, timestamps are Unix seconds and values are the ratings.

    Args:
        name: a TFDS ratings config: "100k-ratings", "1m-ratings", "latest-small-ratings",
            "20m-ratings" or "25m-ratings".

    Raises:
        ImportError: tensorflow-datasets is not installed.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Loading MovieLens through TFDS needs tensorflow-datasets: pip install 'recjax[tfds]'"
        ) from error
    source = f"tfds:movielens/{name}"
    data = tfds.as_numpy(tfds.load(f"movielens/{name}", split="train", batch_size=-1))
    errors = RowErrors(source, "raise")
    rows = np.arange(1, len(data["user_rating"]) + 1)
    events = EventLog(
        user=parse_ids(_text(data["user_id"]), rows, "user_id", errors),
        item=parse_ids(_text(data["movie_id"]), rows, "movie_id", errors),
        timestamp=np.asarray(data["timestamp"], dtype=np.int64),
        event_type=np.full(len(rows), EventType.RATING, dtype=np.int8),
        value=np.asarray(data["user_rating"], dtype=np.float32),
    )
    report = LoadReport(source=source, rows_read=len(rows))
    errors.resolve(report)
    return finish(events, np.ones(len(rows), dtype=bool), report)


def _text(values: np.ndarray) -> pa.Array:
    """TFDS string features (numpy bytes) -> UTF-8 text."""
    return pa.array(values, pa.binary()).cast(pa.large_string())
