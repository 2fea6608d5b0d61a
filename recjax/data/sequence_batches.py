"""Training batches for sequence encoders: users' training sequences packed into rows.

Every training position of a user is a next-item example whose inputs are the events
before it, so one causal pass over the sequence trains all of them at once. Sequences
are short next to the maximum length (Amazon Beauty: 9 events on average, 50 allowed),
so rows hold several users side by side, each a segment that attends only to itself
(`recjax.layers.attention.causal_segment_mask`). Packing is fixed once (best fit,
longest first); epochs shuffle the rows. Batch `s` is a pure function of (seed, s),
so a resumed run sees the batches an uninterrupted one would.

A sequence longer than the maximum length is cut into windows of that length from the
end: every target is trained on, with at most `max_length` events of context.
"""

from __future__ import annotations

import numpy as np

from recjax.data.examples import RetrievalData
from recjax.data.pipeline import BatchConfig
from recjax.data.splits import Role
from recjax.data.vocab import PAD

AGE_LIMIT = np.iinfo(np.int32).max  # Ages (seconds) are clipped to int32.


class SequenceBatches:
    """Fixed-shape batches of `config.batch_size` packed rows of `max_length` positions.

    Fields of a batch (all [rows, max_length] unless noted):
      items, targets: input item and the next item (PAD where there is none);
      segment: 1, 2, ... per packed sequence, 0 on padding;
      position: index of each event in its sequence (0 = the window's first event);
      age: seconds from each event to its sequence's latest input event;
      event_type: `EventType` of each input event;
      target_log_q: log expected count of each target among a batch's targets (logQ);
      negative, negative_log_q [num_uniform_negatives]: uniform negatives, if configured.
    """

    def __init__(self, data: RetrievalData, config: BatchConfig, max_length: int):
        self.data, self.config, self.max_length = data, config, max_length
        starts, stops = _training_windows(data, max_length)
        if not len(starts):
            raise ValueError(
                "No user has two training events: a sequence model has nothing to learn from."
            )
        self.rows = _pack(starts, stops, max_length)
        self.num_rows = int(self.rows.max()) + 1
        self.steps_per_epoch = -(-self.num_rows // config.batch_size)
        self._columns = self._fill(starts, stops)
        counts = data.train_counts.astype(np.float64)
        tokens_per_batch = (stops - starts).sum() / self.steps_per_epoch
        self.log_expected_count = np.log(
            np.maximum(counts, 1.0) / max(counts.sum(), 1.0) * tokens_per_batch
        ).astype(np.float32)
        self.num_sequences = len(starts)
        self.num_targets = int((stops - starts).sum())

    def _fill(self, starts: np.ndarray, stops: np.ndarray) -> dict[str, np.ndarray]:
        """The packed rows as [num_rows, max_length] columns."""
        timelines, length = self.data.timelines, self.max_length
        shape = (self.num_rows, length)
        columns = {
            name: np.zeros(shape, dtype=np.int32)
            for name in ("items", "targets", "segment", "position", "age", "event_type")
        }
        sizes = stops - starts
        # Segments fill their row left to right, in the order _pack assigned them.
        order = np.lexsort((np.arange(len(starts)), self.rows))
        row_sorted = self.rows[order]
        first_in_row = np.r_[True, row_sorted[1:] != row_sorted[:-1]]
        segment_number = np.arange(len(order)) - np.maximum.accumulate(
            np.where(first_in_row, np.arange(len(order)), 0)
        )
        offset_in_row = np.cumsum(sizes[order]) - sizes[order]
        offset_in_row -= np.maximum.accumulate(np.where(first_in_row, offset_in_row, 0))
        for column_start, segment, index in zip(
            offset_in_row, segment_number + 1, order, strict=True
        ):
            row, size = self.rows[index], sizes[index]
            positions = np.arange(starts[index], stops[index])
            cells = slice(column_start, column_start + size)
            columns["items"][row, cells] = timelines.items[positions]
            columns["targets"][row, cells] = timelines.items[positions + 1]
            columns["segment"][row, cells] = segment
            columns["position"][row, cells] = np.arange(size)
            times = timelines.timestamps[positions]
            columns["age"][row, cells] = np.minimum(times[-1] - times, AGE_LIMIT)
            columns["event_type"][row, cells] = self.data.event_type[positions]
        return columns

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.steps_per_epoch)
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(self.num_rows)
        size = self.config.batch_size
        rows = order[index * size : (index + 1) * size]
        batch = {name: column[rows] for name, column in self._columns.items()}
        if len(rows) < size:  # The epoch's last batch: empty rows carry no loss.
            batch = {
                name: np.concatenate(
                    [value, np.zeros((size - len(rows), self.max_length), np.int32)]
                )
                for name, value in batch.items()
            }
        batch["target_log_q"] = np.where(
            batch["targets"] != PAD, self.log_expected_count[batch["targets"]], 0.0
        ).astype(np.float32)
        if self.config.num_uniform_negatives:
            batch.update(self._uniform_negatives(step))
        return batch

    def _uniform_negatives(self, step: int) -> dict[str, np.ndarray]:
        count = self.config.num_uniform_negatives
        first = self.data.items.first_known
        rng = np.random.default_rng([self.config.seed, step, 1])
        negatives = rng.integers(first, self.data.num_items, size=count).astype(np.int32)
        log_q = np.log(count / (self.data.num_items - first))
        return {"negative": negatives, "negative_log_q": np.full(count, log_q, np.float32)}


def _training_windows(data: RetrievalData, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) flat positions of each training window's inputs; a window's targets
    are the positions one later. Windows cover each user's training positions but the
    last (which is only a target), cut into pieces of at most `max_length` from the end."""
    train = data.roles == Role.TRAIN
    timeline = data.timelines.timeline_of_position()
    # The train positions of a timeline are its first ones (both splits are time cuts).
    train_counts = np.bincount(timeline[train], minlength=len(data.timelines.users))
    inputs = np.maximum(train_counts - 1, 0)
    pieces = -(-inputs // max_length)
    owner = np.repeat(np.arange(len(inputs)), pieces)
    piece_from_end = np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    stop_in_timeline = inputs[owner] - piece_from_end * max_length
    start_in_timeline = np.maximum(stop_in_timeline - max_length, 0)
    base = data.timelines.offsets[owner]
    return base + start_in_timeline, base + stop_in_timeline


def _pack(starts: np.ndarray, stops: np.ndarray, capacity: int) -> np.ndarray:
    """Row of each sequence: best fit, longest first (rows of `capacity` positions)."""
    sizes = stops - starts
    rows = np.empty(len(sizes), dtype=np.int64)
    open_rows: list[list[int]] = [[] for _ in range(capacity + 1)]  # by free space
    next_row = 0
    for index in np.argsort(-sizes, kind="stable"):
        size = sizes[index]
        free = next((space for space in range(size, capacity + 1) if open_rows[space]), None)
        if free is None:
            row, free = next_row, capacity
            next_row += 1
        else:
            row = open_rows[free].pop()
        rows[index] = row
        if free - size:
            open_rows[free - size].append(row)
    return rows
