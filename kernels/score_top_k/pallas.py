"""Fused score + top-k as a Pallas kernel: Triton on GPU, `interpret=True` anywhere else.

Grid: (query blocks, item chunks). Each program scores its [block_queries, D] queries
against its chunk of the catalogue, `block_items` items at a time, and keeps the chunk's
running top-k in registers; a block whose best score does not beat any row's current k-th
is skipped. The merge of a block into the running top-k is k rounds of "take the largest
score, lowest id among equals", so ties come in ascending id as in the reference. Each
program writes its chunk's [block_queries, k] best; a final `lax.top_k` over the chunks'
results (chunks in item order) picks the k best, so HBM holds O(Q · chunks · k) floats,
never [Q, N].

Triton needs power-of-2 tiles and dot operands of at least 16 per side: queries are padded
to whole blocks, D to a power of 2 ≥ 16 and the catalogue to whole chunks (one copy of the
items when N or D is not aligned; padded items never win). k is limited to `MAX_K`, past
which the register-resident top-k stops paying off (the api then uses the blocked path).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from ..backend import interpret_pallas
from .reference import EMPTY, mark_empty

MAX_K = 128
DEFAULT_BLOCK_QUERIES = 16
DEFAULT_BLOCK_ITEMS = 128
TARGET_PROGRAMS = 1024  # Enough programs to keep every streaming multiprocessor busy.
_NO_ID = jnp.iinfo(jnp.int32).max


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
        interpret=interpret_pallas(interpret),
    )(*args)
    top_scores_qk, positions_qk = jax.lax.top_k(chunk_scores[:num_queries], k)
    return mark_empty(
        top_scores_qk, jnp.take_along_axis(chunk_indices[:num_queries], positions_qk, axis=1)
    )


def _blocks_per_program(num_blocks: int, query_blocks: int) -> int:
    programs_per_query_block = max(1, TARGET_PROGRAMS // query_blocks)
    return pl.next_power_of_2(pl.cdiv(num_blocks, programs_per_query_block))


def _kernel(queries_ref, items_ref, *refs, k, num_items, block_items, has_excluded):
    excluded_ref = refs[0] if has_excluded else None
    scores_ref, indices_ref = refs[-2:]
    queries_qd = queries_ref[...]
    block_queries, width = scores_ref.shape
    slots_w = jnp.arange(width, dtype=jnp.int32)
    chunk_start = pl.program_id(1) * items_ref.shape[0]

    def scan_block(block, best):
        start = block * block_items
        items_bd = items_ref[pl.ds(start, block_items), :]
        scores_qb = jnp.dot(
            queries_qd,
            items_bd.T,
            precision=jax.lax.Precision.HIGHEST,
            preferred_element_type=jnp.float32,
        )
        ids_b = chunk_start + start + jnp.arange(block_items, dtype=jnp.int32)
        scores_qb = jnp.where(ids_b[None, :] < num_items, scores_qb, -jnp.inf)
        if excluded_ref is not None:

            def exclude(column, scores_qb):
                excluded_q1 = excluded_ref[:, pl.ds(column, 1)]
                return jnp.where(excluded_q1 == ids_b[None, :], -jnp.inf, scores_qb)

            scores_qb = jax.lax.fori_loop(0, excluded_ref.shape[1], exclude, scores_qb)
        kth_best_q = jnp.min(jnp.where(slots_w[None, :] < k, best[0], jnp.inf), axis=1)
        beats_q = (jnp.max(scores_qb, axis=1) > kth_best_q).astype(jnp.int32)
        return jax.lax.cond(
            jnp.max(beats_q) > 0,
            functools.partial(_merge, k=k),
            lambda best, *_: best,
            best,
            scores_qb,
            ids_b,
        )

    empty = (
        jnp.full((block_queries, width), -jnp.inf, jnp.float32),
        jnp.full((block_queries, width), EMPTY, jnp.int32),
    )
    best_scores, best_ids = jax.lax.fori_loop(
        0, items_ref.shape[0] // block_items, scan_block, empty
    )
    scores_ref[...] = best_scores
    indices_ref[...] = best_ids


def _merge(best, scores_qb, ids_b, *, k):
    """The k best of the running top-k and a block, best first, lowest id among equals."""
    best_scores, best_ids = best
    slots_w = jnp.arange(best_scores.shape[1], dtype=jnp.int32)

    def take_next(slot, state):
        old_scores, old_ids, scores_qb, new_scores, new_ids = state
        top_q = jnp.maximum(jnp.max(old_scores, axis=1), jnp.max(scores_qb, axis=1))
        old_id_q = jnp.min(jnp.where(old_scores == top_q[:, None], old_ids, _NO_ID), axis=1)
        block_id_q = jnp.min(jnp.where(scores_qb == top_q[:, None], ids_b[None, :], _NO_ID), axis=1)
        id_q = jnp.where(top_q == -jnp.inf, EMPTY, jnp.minimum(old_id_q, block_id_q))
        at_slot = slots_w[None, :] == slot
        return (
            jnp.where(old_ids == id_q[:, None], -jnp.inf, old_scores),
            old_ids,
            jnp.where(ids_b[None, :] == id_q[:, None], -jnp.inf, scores_qb),
            jnp.where(at_slot, top_q[:, None], new_scores),
            jnp.where(at_slot, id_q[:, None], new_ids),
        )

    state = (
        best_scores,
        best_ids,
        scores_qb,
        jnp.full_like(best_scores, -jnp.inf),
        jnp.full_like(best_ids, EMPTY),
    )
    *_, new_scores, new_ids = jax.lax.fori_loop(0, k, take_next, state)
    return new_scores, new_ids
