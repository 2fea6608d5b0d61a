"""Deterministic training batches: batch `s` is a pure function of (seed, s).

That makes resuming exact: a run restored at step `s` sees the same batches an
uninterrupted run would have seen from `s` on.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recjax.data.examples import RetrievalData


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Batch composition."""

    batch_size: int = 1024  # Queries per step; also the in-batch negatives per query.
    num_uniform_negatives: int = 0  # Extra negatives drawn uniformly from the catalogue.
    seed: int = 0  # Shuffling and negative sampling seed.


class TrainBatches:
    """Shuffled, fixed-size batches of training positions (the last partial batch of an
    epoch is dropped so every step has the same shapes and compiles once)."""

    def __init__(self, data: RetrievalData, config: BatchConfig):
        self.data, self.config = data, config
        self.positions = data.train_positions()
        if len(self.positions) < config.batch_size:
            raise ValueError(
                f"{len(self.positions)} training examples, fewer than one batch "
                f"of {config.batch_size}: lower batch_size."
            )
        self.steps_per_epoch = len(self.positions) // config.batch_size
        counts = data.train_counts.astype(np.float64)
        # logQ: log expected count of an item among one batch's positives.
        self.log_expected_count = np.log(
            np.maximum(counts, 1.0) / counts.sum() * config.batch_size
        ).astype(np.float32)
        self.first_item = data.items.first_known
        self._order, self._order_epoch = self.positions, None

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.steps_per_epoch)
        size = self.config.batch_size
        positions = self._epoch_order(epoch)[index * size : (index + 1) * size]
        batch = self.data.query_features(positions)
        items = self.data.timelines.items[positions]
        batch.update(
            item=items,
            item_tokens=self.data.item_tokens[items],
            item_log_q=self.log_expected_count[items],
        )
        if self.config.num_uniform_negatives:
            batch.update(self._uniform_negatives(step))
        return batch

    def _uniform_negatives(self, step: int) -> dict[str, np.ndarray]:
        count = self.config.num_uniform_negatives
        rng = np.random.default_rng([self.config.seed, step, 1])
        negatives = rng.integers(self.first_item, self.data.num_items, size=count).astype(np.int32)
        log_q = np.log(count / (self.data.num_items - self.first_item))
        return {
            "negative": negatives,
            "negative_tokens": self.data.item_tokens[negatives],
            "negative_log_q": np.full(count, log_q, dtype=np.float32),
        }

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """This epoch's shuffle of the training positions (the latest one is kept)."""
        if self._order_epoch != epoch:
            rng = np.random.default_rng([self.config.seed, epoch])
            self._order, self._order_epoch = rng.permutation(self.positions), epoch
        return self._order
