"""Embedding bag in plain JAX: one id position at a time, accumulating [B, D] in float32.

`lax.scan` over the L positions gathers [B, D] rows per step, so the [B, L, D] rows of the
reference never exist.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .reference import Combiner, pooling_weights


@functools.partial(jax.jit, static_argnames=("combiner", "pad_id"))
def embedding_bag(
    table: jax.Array,
    ids: jax.Array,
    weights: jax.Array | None = None,
    *,
    combiner: Combiner = "sum",
    pad_id: int = -1,
) -> jax.Array:
    """The reference's pooled bags [B, D], gathering one id position per step."""
    rows_bl, weights_bl = pooling_weights(ids, weights, combiner, pad_id)

    def add_position(total_bd, position):
        rows_b, weights_b = position
        rows_bd = jnp.take(table, rows_b, axis=0).astype(jnp.float32)
        return total_bd + weights_b[:, None] * rows_bd, None

    empty_bd = jnp.zeros((ids.shape[0], table.shape[1]), jnp.float32)
    total_bd, _ = jax.lax.scan(add_position, empty_bd, (rows_bl.T, weights_bl.T))
    return total_bd.astype(table.dtype)
