"""Ranker examples from the funnel's own candidates: hard negatives and retrieval features.

A ranker placed after retrieval only ever sees items retrieval ranked highly. Trained
against items drawn uniformly from the catalogue, it learns what separates a purchase
from a random item (mostly popularity), which says little about the order of the top few
hundred retrieved items. So each training positive (a user, the item they bought, when)
is paired with what retrieval showed at that moment:

  window         the `window` catalogue items with the highest retrieval score for the
                 user's query at that time (exact dot products, as in pre-ranking)
  positives      kept only when their item is inside the window: the ranker never
                 scores an item outside it, and a positive outside a window that all
                 negatives come from would teach it that a low retrieval rank is good
  hard negatives `hard_per_positive` items drawn from the window, never an item the
                 user bought in the same basket (same user and time)
  random         `random_per_positive` items drawn from the whole catalogue (mostly far
                 outside the window): what the ranker knows of everything else

Every example also carries the retrieval features (`retrieval_features`): the score and
the rank the query gave its item, computed the same way at serving time
(`recjax.serving.funnel`), so the ranker refines retrieval's order rather than
re-deriving it.

References: Covington et al., "Deep Neural Networks for YouTube Recommendations"
(RecSys 2016); Huang et al., "Embedding-based Retrieval in Facebook Search" (KDD 2020;
hard negatives from the retrieval model's own top results).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recjax.data.ranking_examples import Candidates

RETRIEVAL_SCORE = "retrieval_score"  # The two-tower's dot product of user and item.
RETRIEVAL_RANK = "retrieval_log_rank"  # log(1 + rank) by that score, 0 = the best item.
RETRIEVAL_FEATURES = (RETRIEVAL_SCORE, RETRIEVAL_RANK)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrievalNegativesConfig:
    """Which candidates a ranker trained for a funnel learns from."""

    window: int = 200  # Top items by retrieval score a negative is drawn from (pre-ranking's).
    hard_per_positive: int = 4  # Negatives from the window per positive.
    random_per_positive: int = 1  # Negatives from the whole catalogue per positive.
    seed: int = 0  # Negative sampling.


def retrieval_features(scores: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """The ranker's retrieval inputs for items with these retrieval `scores` and 0-based
    `ranks` (NaN where unknown: the ranker then uses the feature's training mean)."""
    return {
        RETRIEVAL_SCORE: np.asarray(scores, np.float64),
        RETRIEVAL_RANK: np.log1p(np.asarray(ranks, np.float64)),
    }


def descending_order(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, ranks) [..., n] of each row of `scores`, best first (ties: earlier first):
    `order[..., r]` is the item at rank r, `ranks[..., i]` the 0-based rank of item i."""
    order = np.argsort(-np.asarray(scores), axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[-1]), order.shape), -1)
    return order, ranks


def with_retrieval_negatives(
    positives: Candidates,
    query_vectors_pd: np.ndarray,
    item_vectors_nd: np.ndarray,
    catalogue: np.ndarray,
    *,
    config: RetrievalNegativesConfig,
    always_known: tuple[str, ...],
    chunk: int = 2048,
) -> Candidates:
    """`positives` inside their query's retrieval window, hard and random negatives, and
    every example's retrieval features (see the module docstring).

    Args:
      positives: [p] candidates (raw ids; labels and masks for every task).
      query_vectors_pd: [p, d] the retrieval query vector of each positive (the user
        tower's output for the user's history just before it).
      item_vectors_nd: [n, d] retrieval vectors of the `catalogue` items.
      catalogue: [n] raw ids of the items retrieval can return.
      config: window size and negatives per positive.
      always_known: tasks whose label a negative knows (0); the others are masked.

    Returns:
      The kept positives (in their order), then the negatives (each copies its positive's
      user, time and context), with `RETRIEVAL_FEATURES` added to `numeric`.
    """
    n = len(catalogue)
    window = min(config.window, n)
    item_row = _rows_of(catalogue, positives.item)
    basket = _basket_ids(positives)
    bought = np.unique(basket[item_row >= 0] * n + item_row[item_row >= 0])
    rng = np.random.default_rng(config.seed)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    negatives: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(positives), chunk):
        rows = np.arange(start, min(start + chunk, len(positives)))
        rows = rows[item_row[rows] >= 0]
        scores_cn = np.asarray(query_vectors_pd[rows] @ item_vectors_nd.T, np.float64)
        order_cn, ranks_cn = descending_order(scores_cn)
        local = np.flatnonzero(ranks_cn[np.arange(len(rows)), item_row[rows]] < window)
        rows, items = rows[local], item_row[rows[local]]
        parts.append((rows, items, scores_cn[local, items], ranks_cn[local, items]))
        # Drawn with spares: after dropping repeats and the basket's own items, the
        # wanted number usually remains.
        hard = np.take_along_axis(
            order_cn[local],
            rng.integers(0, window, (len(rows), 2 * config.hard_per_positive + 4)),
            1,
        )
        random = rng.integers(0, n, (len(rows), 2 * config.random_per_positive + 2))
        for picks, wanted in (
            (hard, config.hard_per_positive),
            (random, config.random_per_positive),
        ):
            usable = _first_occurrence(picks) & ~np.isin(basket[rows][:, None] * n + picks, bought)
            usable &= np.cumsum(usable, axis=1) <= wanted
            r, c = np.nonzero(usable)
            picked = picks[r, c]
            negatives.append(
                (rows[r], picked, scores_cn[local[r], picked], ranks_cn[local[r], picked])
            )
    source, item_rows, scores, ranks = (
        np.concatenate([part[i] for part in parts + negatives]) for i in range(4)
    )
    is_positive = np.arange(len(source)) < sum(len(part[0]) for part in parts)
    examples = positives.take(source)
    return dataclasses.replace(
        examples,
        item=catalogue[item_rows],
        numeric={**examples.numeric, **retrieval_features(scores, ranks)},
        labels={
            name: np.where(is_positive, label, 0).astype(np.float32)
            for name, label in examples.labels.items()
        },
        masks={
            name: np.where(is_positive, mask, name in always_known)
            for name, mask in examples.masks.items()
        },
    )


def _rows_of(catalogue: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[m] catalogue row of each raw item id (-1 where the catalogue lacks it)."""
    if not len(catalogue):
        return np.full(len(items), -1)
    order = np.argsort(catalogue, kind="stable")
    at = np.clip(np.searchsorted(catalogue[order], items), 0, len(catalogue) - 1)
    return np.where(catalogue[order][at] == items, order[at], -1)


def _basket_ids(positives: Candidates) -> np.ndarray:
    """[p] int64 id of each positive's basket: its (user, time)."""
    _, users = np.unique(positives.user, return_inverse=True)
    pairs = np.stack(
        [users.reshape(-1).astype(np.int64), np.asarray(positives.timestamp, np.int64)]
    )
    _, basket = np.unique(pairs, axis=1, return_inverse=True)
    return basket.reshape(-1).astype(np.int64)


def _first_occurrence(picks: np.ndarray) -> np.ndarray:
    """[r, c] bool: the first time each value appears in its row."""
    order = np.argsort(picks, axis=1, kind="stable")
    sorted_picks = np.take_along_axis(picks, order, axis=1)
    first_sorted = np.ones_like(sorted_picks, dtype=bool)
    first_sorted[:, 1:] = sorted_picks[:, 1:] != sorted_picks[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first
