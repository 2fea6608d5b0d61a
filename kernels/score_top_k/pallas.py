"""Fused score + top-k as a Pallas kernel: Triton on GPU, `interpret=True` anywhere else.

Grid: (query blocks, item chunks). Each program scores its [block_queries, D] queries
against its chunk of the catalogue, `block_items` items at a time, and keeps the chunk's
k best per query in registers as an unsorted set. A block enters the set by repeated
"replace the worst": while some row's best remaining block score beats its worst kept
one, that score replaces it. Order is (score descending, id ascending), so a block item
(a larger id than anything kept from earlier blocks) must beat the worst strictly. After
the first blocks few items qualify, so a block usually costs its dot product and two
reductions. Each program writes its chunk's set; a final sort by (score, id) over the
[Q, chunks · k] results picks the k best in the reference's order. HBM holds
O(Q · chunks · k) floats, never [Q, N].

Triton needs power-of-2 tiles and dot operands of at least 16 per side: queries are padded
to whole blocks, D to a power of 2 ≥ 16 and the catalogue to whole chunks (one copy of the
items when N or D is not aligned; padded items never win). k is limited to `MAX_K`, past
which the register-resident set stops paying off (the api then uses the blocked path).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from ..backend import interpret_pallas
from .reference import EMPTY, canonical_zeros, mark_empty

MAX_K = 128
DEFAULT_BLOCK_QUERIES = 16
DEFAULT_BLOCK_ITEMS = 128
TARGET_PROGRAMS = 1024  # Enough programs to keep every streaming multiprocessor busy.
_NO_ID = jnp.iinfo(jnp.int32).max  # Above every item id.
_NO_SLOT = jnp.iinfo(jnp.int32).min  # Below every id, empty slots' included.


def supports(k: int) -> bool:
    """Whether this kernel handles `k` results per query."""
    return k <= MAX_K


@functools.partial(
    jax.jit,
    static_argnames=("k", "block_queries", "block_items", "blocks_per_program", "interpret"),
)
def score_top_k(
    queries: jax.Array,
    items: jax.Array,
    k: int,
    excluded: jax.Array | None = None,
    *,
    block_queries: int = DEFAULT_BLOCK_QUERIES,
    block_items: int = DEFAULT_BLOCK_ITEMS,
    blocks_per_program: int | None = None,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The reference's top-k from the Pallas kernel.

    Args and returns as `reference.score_top_k`, plus the tiling: `block_queries` and
    `block_items` (powers of 2, ≥ 16 on GPU) and `blocks_per_program` (item blocks per
    program; by default enough programs for `TARGET_PROGRAMS`); `interpret` runs the
    kernel through the Pallas interpreter (default: unless on a GPU).
    """
    if not supports(k):
        raise ValueError(f"the Pallas score + top-k handles k <= {MAX_K}, got {k}.")
    (num_queries, dim), num_items = queries.shape, items.shape[0]
    padded_dim = max(16, pl.next_power_of_2(dim))
    query_blocks = pl.cdiv(num_queries, block_queries)
    if blocks_per_program is None:
        blocks_per_program = _blocks_per_program(pl.cdiv(num_items, block_items), query_blocks)
    chunk = block_items * blocks_per_program
    num_chunks = pl.cdiv(num_items, chunk)
    query_padding = query_blocks * block_queries - num_queries
    width = pl.next_power_of_2(k)  # Slots k.. stay empty.

    args = [
        jnp.pad(queries, ((0, query_padding), (0, padded_dim - dim))),
        jnp.pad(items, ((0, num_chunks * chunk - num_items), (0, padded_dim - dim))),
    ]
    in_specs = [
        pl.BlockSpec((block_queries, padded_dim), lambda i, j: (i, 0)),
        pl.BlockSpec((chunk, padded_dim), lambda i, j: (j, 0)),
    ]
    if excluded is not None and excluded.shape[1] > 0:
        args.append(
            jnp.pad(excluded.astype(jnp.int32), ((0, query_padding), (0, 0)), constant_values=EMPTY)
        )
        in_specs.append(pl.BlockSpec((block_queries, excluded.shape[1]), lambda i, j: (i, 0)))
    out_shape = [
        jax.ShapeDtypeStruct((query_blocks * block_queries, num_chunks * width), jnp.float32),
        jax.ShapeDtypeStruct((query_blocks * block_queries, num_chunks * width), jnp.int32),
    ]
    kernel = functools.partial(
        _kernel, k=k, num_items=num_items, block_items=block_items, has_excluded=len(args) == 3
    )
    chunk_scores, chunk_indices = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(query_blocks, num_chunks),
        in_specs=in_specs,
        out_specs=[pl.BlockSpec((block_queries, width), lambda i, j: (i, j))] * 2,
        # Triton, not the default Mosaic GPU backend (which stages whole blocks in SMEM).
        compiler_params=pltriton.CompilerParams(num_warps=4),
        interpret=interpret_pallas(interpret),
    )(*args)
    # Chunk results are unsorted sets: sort by (score descending, id ascending).
    negated_qc, indices_qc = jax.lax.sort(
        (-chunk_scores[:num_queries], chunk_indices[:num_queries]), dimension=1, num_keys=2
    )
    return mark_empty(-negated_qc[:, :k], indices_qc[:, :k])


def _blocks_per_program(num_blocks: int, query_blocks: int) -> int:
    programs_per_query_block = max(1, TARGET_PROGRAMS // query_blocks)
    return pl.next_power_of_2(pl.cdiv(num_blocks, programs_per_query_block))


def _kernel(queries_ref, items_ref, *refs, k, num_items, block_items, has_excluded):
    excluded_ref = refs[0] if has_excluded else None
    scores_ref, indices_ref = refs[-2:]
    queries_qd = queries_ref[...]
    block_queries, width = scores_ref.shape
    chunk_start = pl.program_id(1) * items_ref.shape[0]

    def scan_block(block, kept):
        start = block * block_items
        items_bd = items_ref[pl.ds(start, block_items), :]
        scores_qb = canonical_zeros(
            jnp.dot(
                queries_qd,
                items_bd.T,
                precision=jax.lax.Precision.HIGHEST,
                preferred_element_type=jnp.float32,
            )
        )
        ids_b = chunk_start + start + jnp.arange(block_items, dtype=jnp.int32)
        scores_qb = jnp.where(ids_b[None, :] < num_items, scores_qb, -jnp.inf)
        if excluded_ref is not None:

            def exclude(column, scores_qb):
                excluded_q1 = excluded_ref[:, pl.ds(column, 1)]
                return jnp.where(excluded_q1 == ids_b[None, :], -jnp.inf, scores_qb)

            scores_qb = jax.lax.fori_loop(0, excluded_ref.shape[1], exclude, scores_qb)
        return _insert_block(kept, scores_qb, ids_b, k)

    # Empty slots hold -inf under distinct negative ids, so "the worst slot" is unique;
    # slots k.. stay empty (the wrapper maps -inf to index -1).
    slots_w = jnp.arange(width, dtype=jnp.int32)
    empty = (
        jnp.full((block_queries, width), -jnp.inf, jnp.float32),
        jnp.broadcast_to(-1 - slots_w[None, :], (block_queries, width)),
    )
    kept_scores, kept_ids = jax.lax.fori_loop(
        0, items_ref.shape[0] // block_items, scan_block, empty
    )
    scores_ref[...] = kept_scores
    indices_ref[...] = kept_ids


def _insert_block(kept, scores_qb, ids_b, k):
    """`kept` ([Q, width] scores and ids, slots < k in use) after inserting a block whose
    ids all exceed the kept ones: each row keeps its k best by (score desc, id asc)."""
    live_w = jnp.arange(kept[0].shape[1], dtype=jnp.int32) < k

    def best_remaining(scores_qb):  # Highest score, lowest id among equals.
        top_q = jnp.max(scores_qb, axis=1)
        return top_q, jnp.min(jnp.where(scores_qb == top_q[:, None], ids_b[None, :], _NO_ID), 1)

    def worst_kept(kept_scores, kept_ids):  # Lowest score, highest id among equals.
        worst_q = jnp.min(jnp.where(live_w[None, :], kept_scores, jnp.inf), axis=1)
        tied = live_w[None, :] & (kept_scores == worst_q[:, None])
        return worst_q, jnp.max(jnp.where(tied, kept_ids, _NO_SLOT), axis=1)

    def improvable(state):
        kept_scores, kept_ids, scores_qb = state
        beats_q = best_remaining(scores_qb)[0] > worst_kept(kept_scores, kept_ids)[0]
        return jnp.max(beats_q.astype(jnp.int32)) > 0

    def replace_worst(state):
        kept_scores, kept_ids, scores_qb = state
        top_q, top_id_q = best_remaining(scores_qb)
        worst_q, worst_id_q = worst_kept(kept_scores, kept_ids)
        accept_q1 = (top_q > worst_q)[:, None]
        replaced_qw = accept_q1 & (kept_ids == worst_id_q[:, None])
        taken_qb = accept_q1 & (ids_b[None, :] == top_id_q[:, None])
        return (
            jnp.where(replaced_qw, top_q[:, None], kept_scores),
            jnp.where(replaced_qw, top_id_q[:, None], kept_ids),
            jnp.where(taken_qb, -jnp.inf, scores_qb),
        )

    kept_scores, kept_ids, _ = jax.lax.while_loop(improvable, replace_worst, (*kept, scores_qb))
    return kept_scores, kept_ids
