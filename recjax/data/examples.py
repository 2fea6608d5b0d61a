"""From an EventLog to retrieval examples: vocabularies, timelines, split, features.

Training examples are flat timeline positions with role TRAIN: (user, the items
before it, context) → the item at that position. Evaluation has one query per user
and role: the user's first position with that role; its targets are all the user's
items with that role (one under leave-last-out, several under a temporal cut).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

import numpy as np

from recjax.data.event_log import EventLog, EventType
from recjax.data.hashing import hash_to_buckets
from recjax.data.splits import Role, leave_last_out, temporal_cut
from recjax.data.timelines import UserTimelines
from recjax.data.vocab import PAD, Vocabulary


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExampleConfig:
    """How events become retrieval examples."""

    positive_events: tuple[str, ...] = ("PURCHASE", "RATING", "INTERACTION")  # EventType names.
    history_length: int = 50  # Most recent items fed to the user tower.
    num_oov_buckets: int = 1  # Hash buckets for unseen user/item/context ids.
    split: Literal["leave_last_out", "temporal"] = "leave_last_out"
    temporal_valid_quantile: float = 0.8  # temporal split: events after this time quantile...
    temporal_test_quantile: float = 0.9  # ...are validation, after this one test.
    context_feature: str | None = "country"  # Per-event feature used as user context, if present.
    text_feature: str | None = "description"  # Per-event item text hashed into item tokens.
    text_tokens: int = 8  # Tokens kept per item text.
    text_buckets: int = 8192  # Hash buckets for text tokens (0 is padding).


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSet:
    """One query per user for a role: query features, targets and already-seen items."""

    positions: np.ndarray  # [Q] flat timeline position of each query.
    targets: np.ndarray  # [Q, T] int32 target item indices, -1 padded.
    seen: np.ndarray  # [Q, E] int32 items the user had before the query, -1 padded.


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrievalData:
    """Everything the two-tower trainer, evaluator and recommender read."""

    config: ExampleConfig
    users: Vocabulary
    items: Vocabulary
    contexts: Vocabulary
    timelines: UserTimelines
    roles: np.ndarray  # [n] int8 `Role` per timeline position.
    context: np.ndarray  # [n] int32 context index per timeline position (PAD if none).
    event_type: np.ndarray  # [n] int32 `EventType` per timeline position.
    item_tokens: np.ndarray  # [num_items, text_tokens] int32 hashed text tokens, 0 padded.
    item_text: np.ndarray  # [num_items] display text (item text, else raw id).
    train_counts: np.ndarray  # [num_items] int64 training occurrences of each item.

    @classmethod
    def build(cls, events: EventLog, config: ExampleConfig) -> RetrievalData:
        positives = events.of_types(tuple(EventType[name] for name in config.positive_events))
        if not len(positives):
            raise ValueError(f"No events of types {config.positive_events} to learn from.")
        users = Vocabulary.build(positives.user, num_oov_buckets=config.num_oov_buckets)
        items = Vocabulary.build(positives.item, num_oov_buckets=config.num_oov_buckets)
        timelines = UserTimelines.build(positives, users, items)
        roles = _split(timelines, config)
        context_values = (
            positives.features.get(config.context_feature) if config.context_feature else None
        )
        if context_values is not None:
            contexts = Vocabulary.build(context_values, num_oov_buckets=config.num_oov_buckets)
            context = contexts.lookup(context_values)[timelines.source_rows]
        else:
            contexts = Vocabulary.build(np.zeros(0, dtype=np.int64), num_oov_buckets=0)
            context = np.full(timelines.num_events, PAD, dtype=np.int32)
        text = positives.features.get(config.text_feature) if config.text_feature else None
        item_text, item_tokens = _item_text(positives, items, text, config)
        train_items = timelines.items[roles == Role.TRAIN]
        return cls(
            config=config,
            users=users,
            items=items,
            contexts=contexts,
            timelines=timelines,
            roles=roles,
            context=context,
            event_type=positives.event_type[timelines.source_rows].astype(np.int32),
            item_tokens=item_tokens,
            item_text=item_text,
            train_counts=np.bincount(train_items, minlength=len(items)),
        )

    @property
    def num_items(self) -> int:
        return len(self.items)

    def train_positions(self) -> np.ndarray:
        return np.flatnonzero(self.roles == Role.TRAIN)

    def query_features(
        self, positions: np.ndarray, rows: np.ndarray | None = None, *, events: bool = False
    ) -> dict[str, np.ndarray]:
        """User-tower inputs for queries made just before each flat position.

        With `rows` (timeline rows), a position may be one past its timeline's end: the
        query after all of that user's events, with the context of their last event.
        With `events`, also each history event's type and age (seconds before the latest
        history event), aligned with `history` (0 on padding).
        """
        rows = self.timelines.row_of(positions) if rows is None else rows
        features = {
            "user": self.timelines.users[rows].astype(np.int32),
            "history": self.timelines.history(positions, self.config.history_length, rows),
            "context": self.context[np.minimum(positions, self.timelines.offsets[rows + 1] - 1)],
        }
        if events:
            features.update(self._history_events(positions, rows))
        return features

    def _history_events(self, positions: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        """`history_event_type` and `history_age` [b, history_length] before each position."""
        length = self.config.history_length
        window = np.asarray(positions, dtype=np.int64)[:, None] - length + np.arange(length)
        inside = window >= self.timelines.offsets[rows][:, None]
        safe = np.where(inside, window, 0)
        times = np.where(inside, self.timelines.timestamps[safe], 0)
        age = np.where(inside, times[:, -1:] - times, 0)
        return {
            "history_event_type": np.where(inside, self.event_type[safe], 0).astype(np.int32),
            "history_age": np.minimum(age, np.iinfo(np.int32).max).astype(np.int32),
        }

    def latest_positions(self, raw_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, rows) of queries after all events of each raw user id.

        Raises:
          KeyError: naming the first id with no events in this data.
        """
        raw_users = np.asarray(raw_users)
        # Cast ints/strings to the vocabulary's kind, but never to its fixed string width:
        # "annie" cut to "ann" would silently answer for another user.
        is_text = self.users.ids.dtype.kind == "U"
        raw_users = raw_users.astype(str if is_text else self.users.ids.dtype)
        known = self.users.contains(raw_users)
        rows = np.searchsorted(self.timelines.users, self.users.lookup(raw_users))
        rows = np.minimum(rows, len(self.timelines.users) - 1)
        known &= self.timelines.users[rows] == self.users.lookup(raw_users)
        if not known.all():
            raise KeyError(raw_users[~known][0].item())
        return self.timelines.offsets[rows + 1], rows

    def eval_set(self, role: Role) -> EvalSet:
        """The queries, targets and seen items for `role` (VALID or TEST)."""
        marked = self.roles == role
        timeline = self.timelines.timeline_of_position()
        positions = np.flatnonzero(marked)
        # Each user's first marked position (none at all when no user has this role).
        first = positions[np.diff(timeline[positions], prepend=-1) != 0]
        query_timeline = timeline[first]
        # Unique: an item bought twice in the held-out period is one target, not two
        # (duplicates would count twice in recall and push NDCG above 1).
        targets = _padded_groups(
            np.searchsorted(query_timeline, timeline[positions]),
            self.timelines.items[positions],
            len(first),
            unique=True,
        )
        before = timeline_positions_before(self.timelines, first)
        seen = _padded_groups(before[0], self.timelines.items[before[1]], len(first), unique=True)
        return EvalSet(positions=first, targets=targets, seen=seen)

    def statistics(self) -> dict[str, int | float]:
        lengths = self.timelines.lengths
        return {
            "users": len(self.timelines.users),
            "items": len(self.items.ids),
            "positive_events": self.timelines.num_events,
            "train_events": int((self.roles == Role.TRAIN).sum()),
            "valid_events": int((self.roles == Role.VALID).sum()),
            "test_events": int((self.roles == Role.TEST).sum()),
            "median_events_per_user": float(np.median(lengths)),
            "density": self.timelines.num_events / max(len(lengths) * len(self.items.ids), 1),
        }


def timeline_positions_before(
    timelines: UserTimelines, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(query row, flat position) for every position before each query in its timeline."""
    starts = timelines.offsets[timelines.row_of(positions)]
    counts = positions - starts
    query_rows = np.repeat(np.arange(len(positions)), counts)
    offsets_in_group = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return query_rows, np.repeat(starts, counts) + offsets_in_group


def _split(timelines: UserTimelines, config: ExampleConfig) -> np.ndarray:
    if config.split == "leave_last_out":
        return leave_last_out(timelines)
    valid_start, test_start = np.quantile(
        timelines.timestamps, [config.temporal_valid_quantile, config.temporal_test_quantile]
    )
    return temporal_cut(timelines, valid_start=int(valid_start), test_start=int(test_start))


def _padded_groups(
    groups: np.ndarray, values: np.ndarray, num_groups: int, *, unique: bool = False
) -> np.ndarray:
    """[num_groups, max group size] of `values` grouped by sorted `groups`, -1 padded."""
    if unique and len(groups):
        pairs = np.unique(np.stack([groups, values.astype(np.int64)]), axis=1)
        groups, values = pairs[0], pairs[1]
    counts = np.bincount(groups, minlength=num_groups)
    out = np.full((num_groups, max(int(counts.max(initial=0)), 1)), -1, dtype=np.int32)
    column = np.arange(len(groups)) - np.repeat(np.cumsum(counts) - counts, counts)
    out[groups, column] = values
    return out


def _item_text(
    events: EventLog, items: Vocabulary, text: np.ndarray | None, config: ExampleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per item: display text (first text seen, else raw id) and hashed text tokens."""
    display = np.asarray(
        ["<pad>"]
        + [f"<oov {b}>" for b in range(items.num_oov_buckets)]
        + [str(i) for i in items.ids],
        dtype=object,
    )
    tokens = np.zeros((len(items), config.text_tokens), dtype=np.int32)
    if text is None:
        return display, tokens
    item_index = items.lookup(events.item)
    _, first_row = np.unique(item_index, return_index=True)
    for index, row in zip(item_index[first_row], first_row, strict=True):  # once per item
        display[index] = str(text[row]).strip()
        words = re.findall(r"[a-z0-9]+", str(text[row]).lower())[: config.text_tokens]
        if words:
            tokens[index, : len(words)] = 1 + hash_to_buckets(
                np.asarray(words), config.text_buckets - 1
            )
    return display, tokens
