"""Embedding bag as a Pallas kernel: Triton on GPU, `interpret=True` anywhere else.

Grid: (bag blocks, column blocks). Each program walks the L id positions of its
`block_bags` bags, gathers their rows' `block_dim` columns straight from the table in
HBM (one [block_bags, block_dim] gather per position) and accumulates the weighted sum in
float32 registers; weights arrive already divided by the bag norm, so every combiner is a
weighted sum. Only [B, D] is written back: the [B, L, D] rows are never stored.

Triton tiles must be powers of 2: bags are padded to whole blocks (ids and weights only,
never the table), and D must be a power of 2 (`supports`; the api uses the blocked path
otherwise).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from ..backend import interpret_pallas
from .reference import Combiner, pooling_weights

DEFAULT_BLOCK_BAGS = 32
MAX_BLOCK_DIM = 128


def supports(dim: int) -> bool:
    """Whether this kernel handles rows of `dim` columns."""
    return dim == pl.next_power_of_2(dim)


@functools.partial(jax.jit, static_argnames=("combiner", "pad_id", "block_bags", "interpret"))
def embedding_bag(
    table: jax.Array,
    ids: jax.Array,
    weights: jax.Array | None = None,
    *,
    combiner: Combiner = "sum",
    pad_id: int = -1,
    block_bags: int = DEFAULT_BLOCK_BAGS,
    interpret: bool | None = None,
) -> jax.Array:
    """The reference's pooled bags [B, D] from the Pallas kernel.

    `block_bags` (a power of 2) bags per program; `interpret` runs the kernel through the
    Pallas interpreter (default: unless on a GPU).
    """
    (num_bags, bag_size), (num_rows, dim) = ids.shape, table.shape
    if not supports(dim):
        raise ValueError(f"the Pallas embedding bag needs a power-of-2 dim, got {dim}.")
    block_dim = min(dim, MAX_BLOCK_DIM)
    bag_blocks = pl.cdiv(num_bags, block_bags)
    padding = ((0, bag_blocks * block_bags - num_bags), (0, 0))
    rows_bl, weights_bl = pooling_weights(ids, weights, combiner, pad_id)
    bags_spec = pl.BlockSpec((block_bags, bag_size), lambda i, j: (i, 0))
    pooled_bd = pl.pallas_call(
        _kernel,
        out_shape=jax.ShapeDtypeStruct((bag_blocks * block_bags, dim), table.dtype),
        grid=(bag_blocks, dim // block_dim),
        in_specs=[
            bags_spec,
            bags_spec,
            pl.BlockSpec((num_rows, block_dim), lambda i, j: (0, j)),
        ],
        out_specs=pl.BlockSpec((block_bags, block_dim), lambda i, j: (i, j)),
        # Triton, not the default Mosaic GPU backend (which stages whole blocks in SMEM).
        compiler_params=pltriton.CompilerParams(num_warps=4),
        interpret=interpret_pallas(interpret),
    )(jnp.pad(rows_bl, padding), jnp.pad(weights_bl, padding), table)
    return pooled_bd[:num_bags]


def _kernel(rows_ref, weights_ref, table_ref, pooled_ref):
    def add_position(position, total_bd):
        rows_bd = table_ref[rows_ref[:, position], :].astype(jnp.float32)
        return total_bd + weights_ref[:, position][:, None] * rows_bd

    total_bd = jax.lax.fori_loop(
        0, rows_ref.shape[1], add_position, jnp.zeros(pooled_ref.shape, jnp.float32)
    )
    pooled_ref[...] = total_bd.astype(pooled_ref.dtype)
