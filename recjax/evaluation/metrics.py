"""Top-K ranking metrics from the ranks of held-out targets.

Shape letters: U users, T targets per user (padded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def metrics_from_ranks(
    ranks: np.ndarray, ks: Sequence[int] = (10, 20, 50, 100)
) -> dict[str, float]:
    """Recall@K, HR@K, NDCG@K for each K, and MRR, averaged over users with a target.

    Per user with targets at 0-based ranks r_1..r_n:
      Recall@K = #{r_i < K} / n;  HR@K = 1 if any r_i < K;
      NDCG@K = Σ_{r_i<K} 1/log2(r_i+2) / Σ_{i<min(n,K)} 1/log2(i+2);
      MRR = 1 / (min_i r_i + 1), with no cut-off.

    Args:
      ranks: [U, T] integer ranks; negative entries are padding (no target).
      ks: the cut-offs K.

    Returns:
      `{"recall@K", "hr@K", "ndcg@K"}` for each K, `"mrr"`, and `"num_users"` (the
      number of users with at least one target; the others are ignored).

    Raises:
      ValueError: if `ranks` is not 2-D, a K is not positive, or no user has a target.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be [U, T], got shape {ranks.shape}.")
    if any(k <= 0 for k in ks):
        raise ValueError(f"Cut-offs must be positive, got {tuple(ks)}.")
    present_ut = ranks >= 0
    num_targets_u = present_ut.sum(axis=1)
    has_target = num_targets_u > 0
    if not has_target.any():
        raise ValueError("No user has a target; metrics are undefined.")
    present_ut, num_targets_u = present_ut[has_target], num_targets_u[has_target]
    ranks_ut = np.where(present_ut, ranks[has_target], 0).astype(np.float64)

    gain_ut = np.where(present_ut, 1.0 / np.log2(ranks_ut + 2.0), 0.0)
    max_k = max(ks, default=1)
    # ideal_dcg[n] = Σ_{i<n} 1/log2(i+2): the DCG of n targets at the top of the list.
    ideal_dcg = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(max_k) + 2.0))])

    metrics: dict[str, float] = {}
    for k in ks:
        hit_ut = present_ut & (ranks_ut < k)
        metrics[f"recall@{k}"] = float(np.mean(hit_ut.sum(axis=1) / num_targets_u))
        metrics[f"hr@{k}"] = float(np.mean(hit_ut.any(axis=1)))
        dcg_u = np.where(hit_ut, gain_ut, 0.0).sum(axis=1)
        metrics[f"ndcg@{k}"] = float(np.mean(dcg_u / ideal_dcg[np.minimum(num_targets_u, k)]))
    best_rank_u = np.where(present_ut, ranks_ut, np.inf).min(axis=1)
    metrics["mrr"] = float(np.mean(1.0 / (best_rank_u + 1.0)))
    metrics["num_users"] = int(has_target.sum())
    return metrics
