"""The spec of the fused score + top-k, in plain jnp: score everything, mask, `lax.top_k`.

Shape letters: Q queries, N items, D embedding dim, E excluded ids per query, K results.

The rules every implementation follows:
  - score(q, n) = queries[q] · items[n], computed in float32 (full precision), with -0.0
    counted as +0.0;
  - excluded[q] lists item ids that query q may not return; negative ids are padding and
    ids outside [0, N) are ignored; excluded items score -inf;
  - the K best candidates come back best first; equal scores come in ascending item id
    (the order of `lax.top_k`);
  - a query with fewer than K candidates (K > N, or most items excluded) gets them first,
    then empty slots of score -inf and index -1; an excluded item is never returned.
Scores are assumed finite: -inf marks an empty slot.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

EMPTY = -1  # The index of an empty result slot.


def candidate_mask(excluded: jax.Array | None, num_items: int, batch: int) -> jax.Array:
    """Returns a [batch, num_items] bool mask that is False at each row's excluded items.

    Args:
      excluded: [batch, E] int item ids, negative = padding; or None.
      num_items: N, the number of candidate items.
      batch: the number of rows.
    """
    mask_bn = jnp.ones((batch, num_items), dtype=bool)
    if excluded is None:
        return mask_bn
    return mask_bn.at[jnp.arange(batch)[:, None], _column_or_drop(excluded, num_items)].set(
        False, mode="drop"
    )


def block_scores(
    queries_qd: jax.Array,
    items_bd: jax.Array,
    excluded_qe: jax.Array | None = None,
    first_item: int | jax.Array = 0,
) -> jax.Array:
    """[Q, b] float32 scores of the items first_item .. first_item+b-1; excluded ones -inf."""
    scores_qb = canonical_zeros(
        jnp.dot(
            queries_qd,
            items_bd.T,
            precision=jax.lax.Precision.HIGHEST,
            preferred_element_type=jnp.float32,
        )
    )
    if excluded_qe is None:
        return scores_qb
    columns_qe = _column_or_drop(excluded_qe - first_item, items_bd.shape[0])
    rows_q1 = jnp.arange(queries_qd.shape[0])[:, None]
    return scores_qb.at[rows_q1, columns_qe].set(-jnp.inf, mode="drop")


def canonical_zeros(scores: jax.Array) -> jax.Array:
    """`scores` with -0.0 made +0.0: `lax.top_k` and `lax.sort` order -0.0 below +0.0, but
    they are equal scores and must tie (a zero query scores ±0 against every item)."""
    return jnp.where(scores == 0, 0.0, scores)


def mark_empty(scores_qk: jax.Array, indices_qk: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(scores, int32 indices) with index -1 wherever the score is -inf (no candidate)."""
    return scores_qk, jnp.where(scores_qk == -jnp.inf, EMPTY, indices_qk).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="k")
def score_top_k(
    queries: jax.Array, items: jax.Array, k: int, excluded: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """The k best items for each query by dot product, from the full [Q, N] score matrix.

    Args:
      queries: [Q, D] float32 or bfloat16.
      items: [N, D], the dtype of `queries`.
      k: results per query (may exceed N).
      excluded: [Q, E] int item ids each query may not return (-1 = padding); or None.

    Returns:
      (scores [Q, k] float32, indices [Q, k] int32), best first; see the module docstring
      for ties and empty slots.
    """
    scores_qn = block_scores(queries, items, excluded)
    num_items = items.shape[0]
    if k > num_items:  # top_k needs k <= N: the extra slots are empty.
        scores_qn = jnp.pad(scores_qn, ((0, 0), (0, k - num_items)), constant_values=-jnp.inf)
    return mark_empty(*jax.lax.top_k(scores_qn, k))


def _column_or_drop(columns: jax.Array, num_columns: int) -> jax.Array:
    # Columns outside [0, num_columns) (padding included) go to num_columns, which
    # mode="drop" ignores; a negative index would otherwise wrap around.
    return jnp.where((columns >= 0) & (columns < num_columns), columns, num_columns)
