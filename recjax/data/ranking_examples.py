"""Labelled ranking examples: (user, candidate item, context) → per-task labels and masks.

A dataset adapter (`recjax.data.ranking_datasets`) turns its events into `Candidates`
(raw ids, context, labels) plus the log of engagements (what the user did). This module
encodes them into model inputs the same way for training and for serving:

  user, item    vocabulary indices (ids seen anywhere in the data; others hash to OOV)
  categorical   the side fields (plus hour and weekday of the timestamp, UTC), each with
                its own vocabulary, as rows of one shared table
  numeric       log(1 + the user's engagements so far), log(1 + the item's engagements so
                far), and the adapter's numeric fields; standardised with training stats
                (a NaN, a value not known for this request, becomes the training mean)
  session       the user's last `session_length` engaged items, most recent last
  position      display slot (1-based; 0 = unknown)

No leakage: session and counts use only engagements strictly before the example's
timestamp, and the split is a global time cut (train < valid < test), so no example
sees an engagement from its own moment or later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from recjax.data.event_log import EventLog
from recjax.data.splits import Role
from recjax.data.vocab import PAD, Vocabulary
from recjax.losses.multitask import TaskSpec
from recjax.models.ranking import RankingFeatures

SECONDS_PER_DAY = 86_400
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0).


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidates:
    """(user, item) pairs to rank, in raw ids, with context and (for training) labels."""

    user: np.ndarray  # [n] raw user ids.
    item: np.ndarray  # [n] raw item ids.
    timestamp: np.ndarray  # [n] int64 seconds: when the item was (or is to be) shown.
    position: np.ndarray | None = None  # [n] int display slot, 1-based; None = no data.
    categorical: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # [n] each
    numeric: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # [n] each
    labels: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # [n] float each
    masks: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # [n] bool each

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> Candidates:
        """The candidates at `rows` (a boolean mask or integer indices)."""

        def each(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {name: column[rows] for name, column in columns.items()}

        return Candidates(
            user=self.user[rows],
            item=self.item[rows],
            timestamp=self.timestamp[rows],
            position=None if self.position is None else self.position[rows],
            categorical=each(self.categorical),
            numeric=each(self.numeric),
            labels=each(self.labels),
            masks=each(self.masks),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingExamples:
    """Encoded examples: model inputs, labels, masks and split roles, row-aligned."""

    inputs: dict[str, np.ndarray]  # See `recjax.models.ranking`: user, item, categorical, ...
    labels: dict[str, np.ndarray]  # task -> [n] float32 (0 where missing).
    masks: dict[str, np.ndarray]  # task -> [n] bool (False where missing).
    roles: np.ndarray  # [n] int8 `Role`.

    def __len__(self) -> int:
        return len(self.roles)

    def take(self, rows: np.ndarray) -> RankingExamples:
        """The examples at `rows` (a boolean mask or integer indices)."""
        return RankingExamples(
            inputs={name: column[rows] for name, column in self.inputs.items()},
            labels={name: column[rows] for name, column in self.labels.items()},
            masks={name: column[rows] for name, column in self.masks.items()},
            roles=self.roles[rows],
        )

    def of_role(self, role: Role) -> RankingExamples:
        return self.take(self.roles == role)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingEncoder:
    """What encodes raw candidates into model inputs: vocabularies and numeric stats.

    Fitted once on the data (`fit`), then applied to training examples and to served
    requests alike (`encode`).
    """

    users: Vocabulary
    items: Vocabulary
    categorical: dict[str, Vocabulary]  # Field -> its vocabulary (hour, weekday included).
    numeric_names: tuple[str, ...]  # Numeric feature order (history counts first).
    numeric_mean: np.ndarray  # [f] training mean of each numeric feature.
    numeric_std: np.ndarray  # [f] training std (1 where constant).
    session_length: int  # Last engaged items per example.
    num_positions: int  # Largest display slot (0 = no position data).

    @classmethod
    def fit(
        cls,
        candidates: Candidates,
        engaged: EventLog,
        train: np.ndarray,
        *,
        session_length: int,
        num_oov_buckets: int = 1,
    ) -> RankingEncoder:
        """Vocabularies over every id in the data; numeric stats over the `train` rows."""
        fields = _categorical_fields(candidates)
        encoder = cls(
            users=Vocabulary.build(
                np.concatenate([candidates.user, engaged.user]), num_oov_buckets=num_oov_buckets
            ),
            items=Vocabulary.build(
                np.concatenate([candidates.item, engaged.item]), num_oov_buckets=num_oov_buckets
            ),
            categorical={
                name: Vocabulary.build(values, num_oov_buckets=num_oov_buckets)
                for name, values in fields.items()
            },
            numeric_names=("user_engagements", "item_engagements", *candidates.numeric),
            numeric_mean=np.zeros(0),
            numeric_std=np.ones(0),
            session_length=session_length,
            num_positions=int(candidates.position.max()) if candidates.position is not None else 0,
        )
        train_candidates = candidates.take(train)
        _, user_count, item_count = encoder._history(train_candidates, engaged)
        numeric = encoder._numeric_raw(train_candidates, user_count, item_count)
        known = np.isfinite(numeric).any(axis=0)
        mean = np.nanmean(np.where(known, numeric, 0.0), axis=0)
        std = np.nanstd(np.where(known, numeric, 0.0), axis=0)
        return dataclasses.replace(
            encoder, numeric_mean=mean, numeric_std=np.where(std > 0, std, 1.0)
        )

    @property
    def features(self) -> RankingFeatures:
        """The input sizes a `RankingModel` is built with."""
        return RankingFeatures(
            num_users=len(self.users),
            num_items=len(self.items),
            num_categorical_rows=1 + sum(len(vocab) - 1 for vocab in self.categorical.values()),
            num_categorical=len(self.categorical),
            num_numeric=len(self.numeric_names),
            session_length=self.session_length,
            num_positions=self.num_positions,
        )

    def encode(self, candidates: Candidates, engaged: EventLog) -> dict[str, np.ndarray]:
        """Model inputs for `candidates`, with history features from `engaged`.

        Scans `engaged` on every call: fine for building examples; serving encodes with
        precomputed history instead (`encode_with_history`). `position` may be None
        (then 0: the position-free score).
        """
        return self.encode_with_history(candidates, *self._history(candidates, engaged))

    def encode_with_history(
        self,
        candidates: Candidates,
        session: np.ndarray,
        user_count: np.ndarray,
        item_count: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Model inputs for `candidates` given their history features: `session` [n, N]
        item indices of the user's last engagements, the user's and the item's engagement
        counts [n] (at serving time: `recjax.data.ranking_serving.ServingFeatures`)."""
        n = len(candidates)
        fields = _categorical_fields(candidates)
        columns, offset = [], 1
        for name, vocab in self.categorical.items():
            local = vocab.lookup(fields[name])
            columns.append(np.where(local == PAD, PAD, offset + local - 1))
            offset += len(vocab) - 1
        numeric = self._numeric_raw(candidates, user_count, item_count)
        # A missing value (NaN, e.g. no retrieval score on the popularity path) is the
        # training mean: 0 once standardised.
        numeric = np.nan_to_num((numeric - self.numeric_mean) / self.numeric_std, nan=0.0)
        position = np.zeros(n) if candidates.position is None else candidates.position
        return {
            "user": self.users.lookup(candidates.user),
            "item": self.items.lookup(candidates.item),
            "categorical": np.stack(columns, axis=1).astype(np.int32)
            if columns
            else np.zeros((n, 0), np.int32),
            "numeric": numeric.astype(np.float32),
            "session": np.asarray(session, np.int32),
            "position": np.clip(position, 0, self.num_positions).astype(np.int32),
        }

    def _numeric_raw(
        self, candidates: Candidates, user_count: np.ndarray, item_count: np.ndarray
    ) -> np.ndarray:
        columns = [np.log1p(user_count), np.log1p(item_count)]
        columns += [
            np.asarray(candidates.numeric[name], np.float64) for name in self.numeric_names[2:]
        ]
        return np.stack(columns, axis=1)

    def _history(
        self, candidates: Candidates, engaged: EventLog
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(session [n, N] item indices, user's and item's engagement counts [n]), all
        from engagements strictly before each candidate's timestamp."""
        user = self.users.lookup(candidates.user)
        engaged_user = self.users.lookup(engaged.user)
        engaged_item = self.items.lookup(engaged.item)
        session, user_count = last_before(
            engaged_user,
            engaged.timestamp,
            engaged_item,
            user,
            candidates.timestamp,
            self.session_length,
        )
        _, item_count = last_before(
            engaged_item,
            engaged.timestamp,
            engaged_item,
            self.items.lookup(candidates.item),
            candidates.timestamp,
            0,
        )
        return session, user_count, item_count


class KeyedTimes:
    """Events sorted by (key, time) for vectorised "events of key k before time t" queries.

    Each (key, time) becomes one sortable int64, key · width + (time - first), so every
    query is a single `np.searchsorted`.
    """

    def __init__(self, keys: np.ndarray, times: np.ndarray) -> None:
        keys, times = np.asarray(keys, np.int64), np.asarray(times, np.int64)
        self.first = int(times.min()) if len(times) else 0
        # Event offsets are 1..span+1; 0 and span+2 are left for queries beyond them.
        self.width = (int(times.max()) - self.first if len(times) else 0) + 3
        if keys.max(initial=0) >= np.iinfo(np.int64).max // self.width // 2:
            raise ValueError("Keys times the time span overflow int64.")
        composite = self.composite(keys, times)
        self.order = np.argsort(composite, kind="stable")  # Event row of each sorted slot.
        self.sorted = composite[self.order]

    def composite(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        # Query times beyond the events' range clip to just before the first / just after
        # the last event, which selects the same events.
        rel = np.clip(np.asarray(times, np.int64) - self.first + 1, 0, self.width - 1)
        return np.asarray(keys, np.int64) * self.width + rel

    def start(self, keys: np.ndarray) -> np.ndarray:
        """Sorted slot of each key's first event."""
        return np.searchsorted(self.sorted, np.asarray(keys, np.int64) * self.width, "left")

    def before(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Sorted slot just after the key's last event earlier than `times`."""
        return np.searchsorted(self.sorted, self.composite(keys, times), "left")

    def next_time(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Time of the key's first event later than `times` (float64), +inf if none."""
        slot = np.searchsorted(self.sorted, self.composite(keys, times), "right")
        at = self.sorted[np.minimum(slot, len(self.sorted) - 1)] if len(self.sorted) else slot
        found = (slot < len(self.sorted)) & (at // self.width == np.asarray(keys, np.int64))
        return np.where(found, (at % self.width - 1 + self.first).astype(np.float64), np.inf)


def last_before(
    keys: np.ndarray,
    times: np.ndarray,
    values: np.ndarray,
    query_keys: np.ndarray,
    query_times: np.ndarray,
    length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each query (key k, time t): the last `length` values of events with key k and
    time < t (oldest first, PAD on the left), and how many such events there are.

    Args:
      keys, times, values: [m] int events (e.g. user index, timestamp, item index).
      query_keys, query_times: [n] the queries.
      length: values kept per query (0: counts only).

    Returns:
      ([n, length] int32 values, [n] int64 counts).
    """
    index = KeyedTimes(keys, times)
    lower = index.before(query_keys, query_times)
    counts = lower - index.start(query_keys)
    values = np.asarray(values)[index.order]
    offsets = np.arange(-length, 0)
    slots = lower[:, None] + offsets[None, :]
    valid = offsets[None, :] >= -counts[:, None]
    session = np.where(valid, values[np.clip(slots, 0, max(len(values) - 1, 0))], PAD)
    return session.astype(np.int32), counts


def _categorical_fields(candidates: Candidates) -> dict[str, np.ndarray]:
    """The adapter's categorical fields plus the hour and weekday of the timestamp (UTC)."""
    day, second = np.divmod(np.asarray(candidates.timestamp, np.int64), SECONDS_PER_DAY)
    return {
        **candidates.categorical,
        "hour": second // 3600,
        "weekday": (day + _EPOCH_WEEKDAY) % 7,
    }


def temporal_roles(
    timestamps: np.ndarray, *, valid_quantile: float, test_quantile: float
) -> np.ndarray:
    """[n] `Role` by global time cuts at two quantiles of `timestamps`."""
    if not 0 < valid_quantile <= test_quantile < 1:
        raise ValueError(
            f"Need 0 < valid_quantile <= test_quantile < 1, got {valid_quantile}, {test_quantile}."
        )
    valid_start, test_start = np.quantile(timestamps, [valid_quantile, test_quantile])
    roles = np.full(len(timestamps), Role.TRAIN, np.int8)
    roles[timestamps >= valid_start] = Role.VALID
    roles[timestamps >= test_start] = Role.TEST
    return roles


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingData:
    """One dataset ready to train on: encoded examples, their tasks, and the encoder."""

    name: str  # Dataset name, for reports.
    examples: RankingExamples
    tasks: tuple[TaskSpec, ...]  # The heads this data has labels for (kinds; weight 1).
    encoder: RankingEncoder

    @classmethod
    def build(
        cls,
        name: str,
        candidates: Candidates,
        engaged: EventLog,
        tasks: tuple[TaskSpec, ...],
        *,
        session_length: int,
        valid_quantile: float,
        test_quantile: float,
    ) -> RankingData:
        """Splits `candidates` by time, fits the encoder on them and encodes them."""
        roles = temporal_roles(
            candidates.timestamp, valid_quantile=valid_quantile, test_quantile=test_quantile
        )
        encoder = RankingEncoder.fit(
            candidates, engaged, roles == Role.TRAIN, session_length=session_length
        )
        examples = RankingExamples(
            inputs=encoder.encode(candidates, engaged),
            labels={
                task.name: np.where(
                    candidates.masks[task.name], candidates.labels[task.name], 0
                ).astype(np.float32)
                for task in tasks
            },
            masks={task.name: np.asarray(candidates.masks[task.name], bool) for task in tasks},
            roles=roles,
        )
        return cls(name=name, examples=examples, tasks=tasks, encoder=encoder)
