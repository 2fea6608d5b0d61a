"""The spec of the embedding bag, in plain jnp: gather every row, then pool with weights.

Shape letters: B bags, L ids per bag (padded), V table rows, D embedding dim.

With weights w (ones by default) set to 0 at padding ids (`pad_id`, default -1):
  "sum"   Σ w·e,   "mean"   Σ w·e / Σ w,   "sqrtn"   Σ w·e / sqrt(Σ w²),
as `recjax.layers.embedding.combine_bag` and TensorFlow's `embedding_lookup_sparse`. A bag
whose norm (Σ w or Σ w²) is 0 (all padding, or all-zero weights) is divided by 1 instead,
so an empty bag pools to zeros, never NaN. Pooling runs in float32; the result has the
table's dtype. Ids other than `pad_id` must lie in [0, V).
"""

from __future__ import annotations

import functools
from typing import Literal, get_args

import jax
import jax.numpy as jnp

Combiner = Literal["sum", "mean", "sqrtn"]
COMBINERS: tuple[str, ...] = get_args(Combiner)


def bag_weights(ids: jax.Array, weights: jax.Array | None, pad_id: int) -> jax.Array:
    """[B, L] float32 weights (ones if None), 0 at padding."""
    weights = jnp.ones(ids.shape, jnp.float32) if weights is None else weights
    return jnp.where(ids == pad_id, 0.0, weights.astype(jnp.float32))


def bag_norm(weights_bl: jax.Array, combiner: Combiner) -> jax.Array:
    """[B] float32 divisor of each bag's weighted sum under `combiner`; 1 where it is 0."""
    if combiner == "sum":
        return jnp.ones(weights_bl.shape[:1], jnp.float32)
    norm_b = weights_bl.sum(axis=1) if combiner == "mean" else jnp.square(weights_bl).sum(axis=1)
    norm_b = jnp.where(norm_b != 0, norm_b, 1.0)
    return jnp.sqrt(norm_b) if combiner == "sqrtn" else norm_b


def pooling_weights(
    ids: jax.Array, weights: jax.Array | None, combiner: Combiner, pad_id: int
) -> tuple[jax.Array, jax.Array]:
    """(int32 row ids [B, L] with padding sent to row 0, float32 weights [B, L] already
    divided by the bag norm): the pooled bag is then just Σ_l weights · table[rows]."""
    weights_bl = bag_weights(ids, weights, pad_id)
    rows_bl = jnp.where(ids == pad_id, 0, ids).astype(jnp.int32)
    return rows_bl, weights_bl / bag_norm(weights_bl, combiner)[:, None]


@functools.partial(jax.jit, static_argnames=("combiner", "pad_id"))
def embedding_bag(
    table: jax.Array,
    ids: jax.Array,
    weights: jax.Array | None = None,
    *,
    combiner: Combiner = "sum",
    pad_id: int = -1,
) -> jax.Array:
    """Pools each bag's rows: [B, L] ids (and weights) → [B, D] in the table's dtype.

    Gathers the full [B, L, D] rows first; see the module docstring for the rules.
    """
    weights_bl = bag_weights(ids, weights, pad_id)
    rows_bld = jnp.take(table, jnp.where(ids == pad_id, 0, ids), axis=0).astype(jnp.float32)
    total_bd = jnp.einsum("bl,bld->bd", weights_bl, rows_bld, precision=jax.lax.Precision.HIGHEST)
    return (total_bd / bag_norm(weights_bl, combiner)[:, None]).astype(table.dtype)
