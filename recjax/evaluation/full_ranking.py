"""Full-ranking evaluation: rank every held-out target against the whole catalogue.

Ranks are counts (how many candidates score at least as high as the target), not a top-k:
MRR needs the rank of a target however deep it sits, and `score_fn` may be any scorer
(popularity, co-occurrence), not a dot product. So the fused score + top-k kernel does not
fit here; what this module shares with it is the exclusion rule (`candidate_mask`, from the
kernel's reference), so "excluded" means the same in evaluation and in exact retrieval.

Shape letters: B users in a batch, N items, T targets per user, E excluded items per user,
U users in total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from recjax.evaluation.metrics import metrics_from_ranks
from recjax_kernels.score_top_k.reference import candidate_mask


@jax.jit
def target_ranks(
    scores: jax.Array, targets: jax.Array, excluded: jax.Array | None = None
) -> jax.Array:
    """The 0-based rank of each target among the candidate items, ties counted against it.

    rank(t) = #{j != t, j not excluded : s_j >= s_t}, so a model that scores everything
    alike gets no credit. Excluded items (e.g. the user's training history) are removed
    from the candidates. A target that is itself excluded can't be recommended, so it is
    a miss: its rank is N (past every cut-off K <= N). Scores should be finite.

    Args:
      scores: [B, N] scores of every item for each user.
      targets: [B, T] int item indices of the held-out targets, -1 = padding.
      excluded: [B, E] int item indices removed from the candidates, -1 = padding; or None.

    Returns:
      [B, T] int32 ranks; -1 where the target is padding.
    """
    batch, num_items = scores.shape
    is_candidate_bn = candidate_mask(excluded, num_items, batch)

    # One target column at a time, so nothing larger than [B, N] is ever built.
    def rank_of_column(targets_b: jax.Array) -> jax.Array:
        safe_targets_b1 = jnp.clip(targets_b, 0, num_items - 1)[:, None]
        target_scores_b1 = jnp.take_along_axis(scores, safe_targets_b1, axis=1)
        at_least_as_good_b = jnp.sum((scores >= target_scores_b1) & is_candidate_bn, axis=1)
        rank_b = at_least_as_good_b - 1  # The target itself is counted once.
        target_is_candidate_b = jnp.take_along_axis(is_candidate_bn, safe_targets_b1, axis=1)[:, 0]
        rank_b = jnp.where(target_is_candidate_b, rank_b, num_items)
        return jnp.where(targets_b >= 0, rank_b, -1).astype(jnp.int32)

    return jax.lax.map(rank_of_column, targets.T).T


def evaluate_full_ranking(
    score_fn: Callable[[np.ndarray], jax.Array],
    targets: np.ndarray,
    excluded: np.ndarray | None,
    *,
    ks: Sequence[int] = (10, 20, 50, 100),
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "full ranking",
) -> dict[str, float]:
    """Full-ranking Recall/HR/NDCG@K and MRR of a scorer over all users.

    Users are scored in batches of a fixed size (the last one padded by repeating its
    final row), so `score_fn` and the ranker each see one shape and compile once.

    Args:
      score_fn: maps `rows`, a [b] int array of user rows (indices into `targets`), to
        their [b, N] scores over the whole catalogue.
      targets: [U, T] int held-out item indices, -1 = padding.
      excluded: [U, E] int item indices removed from each user's candidates (-1 =
        padding), e.g. the training history; or None. See `target_ranks`.
      ks: metric cut-offs.
      batch_size: users scored at once.
      progress: show a tqdm progress bar.
      desc: the progress bar's label.

    Returns:
      `metrics_from_ranks` of the targets' ranks.
    """
    num_users = targets.shape[0]
    batch = max(1, min(batch_size, num_users))
    ranks = []
    for start in tqdm.trange(0, num_users, batch, disable=not progress, desc=desc):
        stop = min(start + batch, num_users)
        rows_b = np.arange(start, start + batch).clip(max=stop - 1)
        ranks_bt = target_ranks(
            score_fn(rows_b),
            jnp.asarray(targets[rows_b], dtype=jnp.int32),
            None if excluded is None else jnp.asarray(excluded[rows_b], dtype=jnp.int32),
        )
        ranks.append(np.asarray(ranks_bt)[: stop - start])
    return metrics_from_ranks(np.concatenate(ranks), ks)
