"""The columnar event log every reader produces and every later stage consumes."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

import numpy as np


class EventType(enum.IntEnum):
    """What a user did to an item. Stored as int8 in `EventLog.event_type`."""

    INTERACTION = 0  # Generic implicit feedback (a sequence entry, a click log row).
    RATING = 1  # An explicit rating; `value` holds the rating.
    PURCHASE = 2  # A purchase; `value` holds the quantity.
    CANCELLATION = 3  # A cancelled purchase: a negative event; `value` holds |quantity|.


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventLog:
    """User-item events as parallel numpy columns (one row per event).

    Raw ids keep the type the source gave them (int64 or unicode); `recjax.data.vocab`
    maps them to contiguous indices. Rows are in source order; nothing is sorted here.
    """

    user: np.ndarray  # [n] raw user ids.
    item: np.ndarray  # [n] raw item ids.
    timestamp: np.ndarray  # [n] int64 seconds since the Unix epoch (or an ordinal).
    event_type: np.ndarray  # [n] int8 `EventType` values.
    value: np.ndarray  # [n] float32: rating, quantity, dwell seconds... (1.0 if none).
    features: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # [n] each.

    def __post_init__(self) -> None:
        n = len(self.user)
        columns = {
            "item": self.item,
            "timestamp": self.timestamp,
            "event_type": self.event_type,
            "value": self.value,
            **self.features,
        }
        for name, column in columns.items():
            if len(column) != n:
                raise ValueError(
                    f"EventLog column {name!r} has {len(column)} rows, 'user' has {n}."
                )

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> EventLog:
        """Returns the log restricted to `rows` (a boolean mask or integer indices)."""
        return EventLog(
            user=self.user[rows],
            item=self.item[rows],
            timestamp=self.timestamp[rows],
            event_type=self.event_type[rows],
            value=self.value[rows],
            features={name: column[rows] for name, column in self.features.items()},
        )

    def of_types(self, types: tuple[EventType, ...]) -> EventLog:
        """Returns only the events whose type is in `types`."""
        return self.take(np.isin(self.event_type, np.asarray(types, dtype=np.int8)))

    def num_users(self) -> int:
        return len(np.unique(self.user))

    def num_items(self) -> int:
        return len(np.unique(self.item))
