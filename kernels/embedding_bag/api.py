"""The embedding-bag entry point: picks an implementation for the backend."""

from __future__ import annotations

from typing import Literal

import jax

from ..backend import on_gpu
from . import blocked, pallas, reference
from .reference import Combiner
from .specs import check_args

Implementation = Literal["reference", "blocked", "pallas"]
IMPLEMENTATIONS = {
    "reference": reference.embedding_bag,
    "blocked": blocked.embedding_bag,
    "pallas": pallas.embedding_bag,
}


def select_implementation(dim: int) -> Implementation:
    """The fastest implementation here: the Pallas kernel on a GPU when it handles `dim`,
    else the blocked plain-JAX scan (on CPU several times the throughput of the naive
    gather + sum, and of the reference: experiments/results/kernels.json)."""
    return "pallas" if on_gpu() and pallas.supports(dim) else "blocked"


def embedding_bag(
    table: jax.Array,
    ids: jax.Array,
    weights: jax.Array | None = None,
    *,
    combiner: Combiner = "sum",
    pad_id: int = -1,
    implementation: Implementation | None = None,
) -> jax.Array:
    """Gathers and pools each bag of multi-valent ids: [B, L] ids → [B, D].

    Args:
      table: [V, D] float32 or bfloat16 embedding rows.
      ids: [B, L] int row ids, `pad_id` where a bag has fewer than L ids.
      weights: [B, L] per-id weights; None = all ones. Ignored at padding.
      combiner: "sum" Σ w·e, "mean" Σ w·e / Σ w, or "sqrtn" Σ w·e / sqrt(Σ w²).
      pad_id: the padding id (-1 by default; 0 for tables whose row 0 is padding).
      implementation: force one of `IMPLEMENTATIONS`; default `select_implementation`.

    Returns:
      [B, D] pooled bags in the table's dtype (accumulated in float32). A bag whose
      norm is 0 (only padding, or all-zero weights) is divided by 1: an empty bag is 0.
    """
    check_args(table, ids, weights, combiner)
    name = implementation or select_implementation(table.shape[1])
    return IMPLEMENTATIONS[name](table, ids, weights, combiner=combiner, pad_id=pad_id)
