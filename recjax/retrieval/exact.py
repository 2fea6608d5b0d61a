"""Exact maximum-inner-product top-k over an item table, with per-query exclusions.

The scoring and top-k run in the fused kernel `recjax_kernels.score_top_k` (Pallas on a
GPU, a blocked loop elsewhere), so the [Q, N] score matrix is never built.

Shape letters: Q queries, N items, D embedding dim, E excluded items per query, K results.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recjax_kernels.score_top_k.api import score_top_k
from recjax_kernels.score_top_k.reference import candidate_mask

__all__ = ["candidate_mask", "exact_top_k"]  # candidate_mask: the exclusion rule, shared.


def exact_top_k(
    queries: jax.Array,
    items: jax.Array,
    k: int,
    *,
    excluded: jax.Array | None = None,
    query_chunk: int = 1024,
) -> tuple[jax.Array, jax.Array]:
    """The k items with the largest dot product with each query, best first.

    Queries are processed in chunks of `query_chunk` (the last one padded), so the kernel
    compiles once per shape and its working memory stays bounded by the chunk.

    Args:
      queries: [Q, D] query embeddings.
      items: [N, D] item embeddings.
      k: how many items to return; capped at N.
      excluded: [Q, E] int item indices never to return for each query (-1 = padding).
      query_chunk: queries scored at once.

    Returns:
      (scores [Q, K], indices [Q, K] int32) with K = min(k, N). Excluded items are never
      returned: if a query has fewer than K candidates left, its last slots hold index -1
      and score -inf. Equal scores come in ascending item index.
    """
    queries, items = jnp.asarray(queries), jnp.asarray(items)
    num_queries, num_items = queries.shape[0], items.shape[0]
    k = min(k, num_items)
    chunk = max(1, min(query_chunk, num_queries))
    padded = -(-num_queries // chunk) * chunk
    queries = jnp.pad(queries, ((0, padded - num_queries), (0, 0)))
    if excluded is not None:
        excluded = jnp.pad(
            jnp.asarray(excluded), ((0, padded - num_queries), (0, 0)), constant_values=-1
        )
    results = [
        score_top_k(
            queries[start : start + chunk],
            items,
            k,
            excluded=None if excluded is None else excluded[start : start + chunk],
        )
        for start in range(0, padded, chunk)
    ]
    scores_qk = jnp.concatenate([scores for scores, _ in results])[:num_queries]
    indices_qk = jnp.concatenate([indices for _, indices in results])[:num_queries]
    return scores_qk, indices_qk
