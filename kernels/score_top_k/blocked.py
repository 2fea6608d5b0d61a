"""Fused score + top-k in plain JAX: a loop over item blocks that keeps a running top-k.

Each step scores one [Q, block_items] block, masks its excluded items and merges it with
the running [Q, K] best by `lax.top_k` over their concatenation, so memory is
O(Q · (block_items + K)) whatever N is; the [Q, N] score matrix never exists. The running
best comes first in each merge and blocks go in item order, so ties keep ascending ids,
as in the reference. The catalogue is read in place (a last, shorter block takes the
remainder), never padded or copied.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .reference import block_scores, mark_empty

DEFAULT_BLOCK_ITEMS = 4096


@functools.partial(jax.jit, static_argnames=("k", "block_items"))
def score_top_k(
    queries: jax.Array,
    items: jax.Array,
    k: int,
    excluded: jax.Array | None = None,
    *,
    block_items: int = DEFAULT_BLOCK_ITEMS,
) -> tuple[jax.Array, jax.Array]:
    """The reference's top-k, one block of `block_items` items at a time.

    Args and returns as `reference.score_top_k`; `block_items` sets the memory/overhead
    trade-off (scores of one block are [Q, block_items] float32).
    """
    num_queries, num_items = queries.shape[0], items.shape[0]
    best = (
        jnp.full((num_queries, k), -jnp.inf, jnp.float32),
        jnp.full((num_queries, k), -1, jnp.int32),
    )

    def merge(best, items_bd, first_item):
        best_scores_qk, best_indices_qk = best
        scores_qb = block_scores(queries, items_bd, excluded, first_item)
        top_scores_qk, positions_qk = jax.lax.top_k(
            jnp.concatenate([best_scores_qk, scores_qb], axis=1), k
        )
        # Positions < k come from the running best, the rest from this block.
        from_best_qk = jnp.take_along_axis(best_indices_qk, jnp.minimum(positions_qk, k - 1), 1)
        return top_scores_qk, jnp.where(
            positions_qk < k, from_best_qk, first_item + positions_qk - k
        )

    def merge_full_block(block, best):
        first_item = block * block_items
        return merge(best, jax.lax.dynamic_slice_in_dim(items, first_item, block_items), first_item)

    num_full_blocks = num_items // block_items
    if num_full_blocks:  # The body is traced even for zero trips, and a block needs N items.
        best = jax.lax.fori_loop(0, num_full_blocks, merge_full_block, best)
    tail_start = num_full_blocks * block_items
    if tail_start < num_items:
        best = merge(best, items[tail_start:], tail_start)
    return mark_empty(*best)
