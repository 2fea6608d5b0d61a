"""Exact maximum-inner-product top-k over an item table, with per-query exclusions.

Shape letters: Q queries, N items, D embedding dim, E excluded items per query, K results.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def candidate_mask(excluded: jax.Array | None, num_items: int, batch: int) -> jax.Array:
    """Returns a [batch, num_items] bool mask that is False at each row's excluded items.

    Args:
      excluded: [batch, E] int item indices, -1 (any negative) = padding; or None.
      num_items: N, the number of candidate items.
      batch: the number of rows.
    """
    mask_bn = jnp.ones((batch, num_items), dtype=bool)
    if excluded is None:
        return mask_bn
    # Padding is sent out of range, where mode="drop" ignores it.
    columns_be = jnp.where(excluded >= 0, excluded, num_items)
    rows_b1 = jnp.arange(batch)[:, None]
    return mask_bn.at[rows_b1, columns_be].set(False, mode="drop")


@functools.partial(jax.jit, static_argnames="k")
def _top_k_chunk(
    queries_qd: jax.Array, items_nd: jax.Array, excluded_qe: jax.Array | None, k: int
) -> tuple[jax.Array, jax.Array]:
    scores_qn = jnp.dot(queries_qd, items_nd.T, precision=jax.lax.Precision.HIGHEST)
    is_candidate_qn = candidate_mask(excluded_qe, items_nd.shape[0], queries_qd.shape[0])
    scores_qn = jnp.where(is_candidate_qn, scores_qn, -jnp.inf)
    top_scores_qk, top_indices_qk = jax.lax.top_k(scores_qn, k)
    # Fewer than k candidates left: the remaining slots hold excluded items; blank them.
    top_indices_qk = jnp.where(
        jnp.take_along_axis(is_candidate_qn, top_indices_qk, axis=1), top_indices_qk, -1
    )
    return top_scores_qk, top_indices_qk.astype(jnp.int32)


def exact_top_k(
    queries: jax.Array,
    items: jax.Array,
    k: int,
    *,
    excluded: jax.Array | None = None,
    query_chunk: int = 1024,
) -> tuple[jax.Array, jax.Array]:
    """The k items with the largest dot product with each query, best first.

    Queries are processed in chunks of `query_chunk` (the last one padded), so the
    scores never exceed [query_chunk, N] and the inner function compiles once per shape.

    Args:
      queries: [Q, D] query embeddings.
      items: [N, D] item embeddings.
      k: how many items to return; capped at N.
      excluded: [Q, E] int item indices never to return for each query (-1 = padding).
      query_chunk: queries scored at once.

    Returns:
      (scores [Q, K], indices [Q, K] int32) with K = min(k, N). Excluded items are never
      returned: if a query has fewer than K candidates left, its last slots hold index -1
      and score -inf.
    """
    num_queries, num_items = queries.shape[0], items.shape[0]
    k = min(k, num_items)
    chunk = max(1, min(query_chunk, num_queries))
    padded = -(-num_queries // chunk) * chunk
    queries = jnp.pad(jnp.asarray(queries), ((0, padded - num_queries), (0, 0)))
    if excluded is not None:
        excluded = jnp.pad(
            jnp.asarray(excluded), ((0, padded - num_queries), (0, 0)), constant_values=-1
        )
    results = [
        _top_k_chunk(
            queries[start : start + chunk],
            items,
            None if excluded is None else excluded[start : start + chunk],
            k,
        )
        for start in range(0, padded, chunk)
    ]
    scores_qk = jnp.concatenate([scores for scores, _ in results])[:num_queries]
    indices_qk = jnp.concatenate([indices for _, indices in results])[:num_queries]
    return scores_qk, indices_qk
