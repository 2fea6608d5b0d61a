"""Non-learned baselines a model must beat: item popularity and last-item co-occurrence.

Shape letters: U users, n training events, N items, b users in a batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse


def popularity_scores(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Returns [num_items] float32: how often each item index occurs in `train_items`.

    Raises:
      ValueError: if an index is outside [0, num_items).
    """
    train_items = np.asarray(train_items)
    if train_items.size and (train_items.min() < 0 or train_items.max() >= num_items):
        raise ValueError(f"Item indices must lie in [0, {num_items}).")
    return np.bincount(train_items, minlength=num_items).astype(np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cooccurrence:
    """Scores items by how often they co-occurred with the user's last item in training."""

    matrix: scipy.sparse.csr_array  # [N, N] float32: co-occurrence count of (row, column).

    @property
    def num_items(self) -> int:
        return self.matrix.shape[0]

    def scores(self, last_items: np.ndarray) -> np.ndarray:
        """Returns [b, N] float32: the co-occurrence row of each last item.

        Args:
          last_items: [b] int item indices; negative = no history, scored all zeros.
        """
        last_items = np.asarray(last_items)
        scores_bn = np.zeros((len(last_items), self.num_items), dtype=np.float32)
        has_history = last_items >= 0
        scores_bn[has_history] = self.matrix[last_items[has_history]].toarray()
        return scores_bn


def fit_cooccurrence(
    offsets: np.ndarray, items: np.ndarray, *, num_items: int, window: int
) -> Cooccurrence:
    """Counts item pairs that occur within `window` positions in the same user's sequence.

    Every pair of events (p, q) of one user with 0 < |p - q| <= window and different
    items adds 1 to both (items[p], items[q]) and (items[q], items[p]).

    Args:
      offsets: [U + 1] CSR offsets: user u's events are `items[offsets[u]:offsets[u+1]]`.
      items: [n] int item indices in [0, num_items), each user's in time order.
      num_items: N.
      window: the largest position gap that counts.
    """
    offsets, items = np.asarray(offsets), np.asarray(items)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}.")
    if offsets[-1] != len(items):
        raise ValueError(f"offsets end at {offsets[-1]} but there are {len(items)} items.")
    if items.size and (items.min() < 0 or items.max() >= num_items):
        raise ValueError(f"Item indices must lie in [0, {num_items}).")
    user_of_event = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    firsts, seconds = [], []
    for gap in range(1, window + 1):
        same_user = user_of_event[:-gap] == user_of_event[gap:]
        first, second = items[:-gap][same_user], items[gap:][same_user]
        distinct = first != second
        firsts.append(first[distinct])
        seconds.append(second[distinct])
    rows = np.concatenate(firsts + seconds)
    columns = np.concatenate(seconds + firsts)
    counts = scipy.sparse.coo_array(
        (np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(num_items, num_items)
    )
    return Cooccurrence(matrix=counts.tocsr())
