"""The fused score + top-k entry point: picks an implementation for the backend."""

from __future__ import annotations

from typing import Literal

import jax

from ..backend import on_gpu
from . import blocked, pallas, reference
from .specs import check_args

Implementation = Literal["reference", "blocked", "pallas"]
IMPLEMENTATIONS = {
    "reference": reference.score_top_k,
    "blocked": blocked.score_top_k,
    "pallas": pallas.score_top_k,
}


def select_implementation(k: int) -> Implementation:
    """The fastest implementation here: the Pallas kernel on a GPU when it handles `k`,
    else the blocked plain-JAX loop (fused as well: it never builds [Q, N])."""
    return "pallas" if on_gpu() and pallas.supports(k) else "blocked"


def score_top_k(
    queries: jax.Array,
    items: jax.Array,
    k: int,
    *,
    excluded: jax.Array | None = None,
    implementation: Implementation | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The k items with the largest dot product with each query, best first.

    Never materialises the [Q, N] score matrix (except with implementation="reference").

    Args:
      queries: [Q, D] float32 or bfloat16 query embeddings.
      items: [N, D] item embeddings, the dtype of `queries`.
      k: results per query; may exceed N.
      excluded: [Q, E] int item ids never to return for each query (negative = padding,
        ids outside [0, N) ignored), e.g. the items a user has seen; or None.
      implementation: force one of `IMPLEMENTATIONS`; default `select_implementation(k)`.

    Returns:
      (scores [Q, k] float32, indices [Q, k] int32). Equal scores come in ascending item
      id. A query with fewer than k candidates left (k > N, or most items excluded) gets
      all of them first, then empty slots of score -inf and index -1; excluded items are
      never returned.
    """
    check_args(queries, items, k, excluded)
    name = implementation or select_implementation(k)
    return IMPLEMENTATIONS[name](queries, items, k, excluded)
