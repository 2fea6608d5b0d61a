"""The ranker's features known before a request arrives, so serving never scans the log.

`RankingEncoder.encode` reads each candidate's history (the user's last engagements, the
user's and the item's engagement counts) from the engagement log, which costs a scan of
the whole log per call. `ServingFeatures` computes them once, at the end of the log, for
every user and item of the encoder's vocabularies, together with the side fields: item
fields (`ITEM_FIELDS`, e.g. price) per item, and every other field (e.g. country) at the
user's latest value. Encoding a request is then a few table lookups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from recjax.data.event_log import EventLog
from recjax.data.ranking_examples import Candidates, RankingEncoder, last_before
from recjax.data.retrieval_negatives import RETRIEVAL_FEATURES


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServingFeatures:
    """Per-user and per-item ranker inputs after all events of a log. Rows follow the
    encoder's vocabularies (U user rows, I item rows; PAD and OOV rows included)."""

    session: np.ndarray  # [U, n] int32 item indices of the last engagements, oldest first.
    user_count: np.ndarray  # [U] int64 engagements of each user.
    item_count: np.ndarray  # [I] int64 engagements of each item.
    user_fields: dict[str, np.ndarray]  # Request fields: [U] the user's latest value.
    item_fields: dict[str, np.ndarray]  # Item fields: [I] the item's value.

    @classmethod
    def build(
        cls,
        encoder: RankingEncoder,
        candidates: Candidates,
        engaged: EventLog,
        item_fields: tuple[str, ...] = (),
    ) -> ServingFeatures:
        """History after every event of `engaged`; side fields from `candidates` (a field
        never seen for a user or item gets the field's most common value)."""
        users = np.arange(len(encoder.users))
        items = np.arange(len(encoder.items))
        engaged_user = encoder.users.lookup(engaged.user)
        engaged_item = encoder.items.lookup(engaged.item)
        after = np.iinfo(np.int64).max // 4  # Later than every event.
        session, user_count = last_before(
            engaged_user,
            engaged.timestamp,
            engaged_item,
            users,
            np.full(len(users), after),
            encoder.session_length,
        )
        _, item_count = last_before(
            engaged_item, engaged.timestamp, engaged_item, items, np.full(len(items), after), 0
        )
        fields = {**candidates.categorical, **candidates.numeric}
        for name in RETRIEVAL_FEATURES:  # Known per request, never stored per user.
            fields.pop(name, None)
        user_key = encoder.users.lookup(candidates.user)
        item_key = encoder.items.lookup(candidates.item)
        return cls(
            session=session,
            user_count=user_count,
            item_count=item_count,
            user_fields={
                name: _latest(user_key, candidates.timestamp, values, len(users))
                for name, values in fields.items()
                if name not in item_fields
            },
            item_fields={
                name: _latest(item_key, candidates.timestamp, values, len(items))
                for name, values in fields.items()
                if name in item_fields
            },
        )

    def candidates(
        self,
        encoder: RankingEncoder,
        users: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray,
        request_numeric: Mapping[str, np.ndarray] | None = None,
    ) -> Candidates:
        """Raw (user, item) pairs [n] shown at `timestamps` [n], with their side fields.

        `request_numeric`: numeric features only the request knows (the retrieval score
        and rank, `recjax.data.retrieval_negatives.retrieval_features`), [n] each; one the
        encoder reads but the request lacks is NaN (the training mean)."""
        user_rows, item_rows = encoder.users.lookup(users), encoder.items.lookup(items)
        fields = {name: v[user_rows] for name, v in self.user_fields.items()}
        fields |= {name: v[item_rows] for name, v in self.item_fields.items()}
        fields |= dict(request_numeric or {})
        missing = np.full(len(users), np.nan)
        return Candidates(
            user=users,
            item=items,
            timestamp=np.asarray(timestamps, np.int64),
            categorical={name: fields[name] for name in encoder.categorical if name in fields},
            numeric={name: fields.get(name, missing) for name in encoder.numeric_names[2:]},
        )

    def encode(
        self,
        encoder: RankingEncoder,
        user: np.ndarray,
        items: np.ndarray,
        timestamp: int,
        request_numeric: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Model inputs for one user (a raw id, 0-d) and candidate `items` [m] (raw ids),
        shown at `timestamp` (unix seconds), without a display position; `request_numeric`
        as in `candidates`."""
        m = len(items)
        user_row = encoder.users.lookup(np.asarray(user).reshape(1))
        users = np.repeat(np.asarray(user).reshape(1), m)
        return encoder.encode_with_history(
            self.candidates(encoder, users, items, np.full(m, timestamp), request_numeric),
            np.repeat(self.session[user_row], m, axis=0),
            np.repeat(self.user_count[user_row], m),
            self.item_count[encoder.items.lookup(items)],
        )


def _latest(keys: np.ndarray, times: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """[size] the value at each key's latest time; the most common value where a key has
    none."""
    values = np.asarray(values)
    unique, counts = np.unique(values, return_counts=True)
    table = np.full(size, unique[counts.argmax()], dtype=values.dtype)
    order = np.lexsort((times, keys))
    sorted_keys = keys[order]
    last = np.r_[sorted_keys[1:] != sorted_keys[:-1], True]
    table[sorted_keys[last]] = values[order][last]
    return table
