"""Per-user event sequences in time order, stored CSR-style (offsets + flat columns)."""

from __future__ import annotations

import dataclasses

import numpy as np

from recjax.data.event_log import EventLog
from recjax.data.vocab import PAD, Vocabulary


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserTimelines:
    """Every user's events sorted by (timestamp, source row): ties break deterministically.

    User `u` (a user-vocabulary index, listed in `users[u_row]`) owns flat positions
    `offsets[u_row]:offsets[u_row + 1]`.
    """

    users: np.ndarray  # [U] user indices, one per timeline.
    offsets: np.ndarray  # [U + 1] int64 start of each timeline in the flat columns.
    items: np.ndarray  # [n] int32 item indices.
    timestamps: np.ndarray  # [n] int64.
    source_rows: np.ndarray  # [n] int64 row of each event in the EventLog it came from.

    @classmethod
    def build(cls, events: EventLog, users: Vocabulary, items: Vocabulary) -> UserTimelines:
        user_index = users.lookup(events.user)
        rows = np.arange(len(events), dtype=np.int64)
        order = np.lexsort((rows, events.timestamp, user_index))
        sorted_users = user_index[order]
        starts = (
            np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
            if len(order)
            else np.zeros(0, dtype=np.int64)
        )
        return cls(
            users=sorted_users[starts],
            offsets=np.r_[starts, len(order)].astype(np.int64),
            items=items.lookup(events.item)[order],
            timestamps=events.timestamp[order],
            source_rows=order,
        )

    @property
    def num_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def timeline_of_position(self) -> np.ndarray:
        """[n] row (into `users`) of the timeline each flat position belongs to."""
        return np.repeat(np.arange(len(self.users)), self.lengths)

    def row_of(self, positions: np.ndarray) -> np.ndarray:
        """Row (into `users`/`offsets`) of the timeline each flat position belongs to."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def history(
        self, positions: np.ndarray, max_length: int, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """[b, max_length] the items before each flat position, oldest first, left-padded.

        Only earlier positions of the same user are read, so a query never sees its own
        target or anything after it. `rows` names each position's timeline when it is
        ambiguous: a position one past a timeline's end means "after all its events".
        """
        positions = np.asarray(positions, dtype=np.int64)
        starts = self.offsets[self.row_of(positions) if rows is None else rows]
        window = positions[:, None] - max_length + np.arange(max_length)
        inside = window >= starts[:, None]
        safe = np.where(inside, window, 0)
        return np.where(inside, self.items[safe], PAD).astype(np.int32)
