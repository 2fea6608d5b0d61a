"""Argument specs of the score + top-k: the checks every entry point shares, and the named
cases the equivalence tests run (each one a corner of the contract in `reference.py`)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = (jnp.float32, jnp.bfloat16)


def check_args(queries: jax.Array, items: jax.Array, k: int, excluded: jax.Array | None) -> None:
    """Raises ValueError unless the arguments fit the contract of `reference.score_top_k`."""
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"queries [Q, D] and items [N, D] expected, got {queries.shape}, {items.shape}."
        )
    if queries.dtype != items.dtype or queries.dtype not in DTYPES:
        raise ValueError(
            f"queries and items must share a dtype in {DTYPES}, got {queries.dtype}, {items.dtype}."
        )
    if k < 1:
        raise ValueError(f"k must be positive, got {k}.")
    if excluded is not None and (
        excluded.ndim != 2
        or excluded.shape[0] != queries.shape[0]
        or not jnp.issubdtype(excluded.dtype, jnp.integer)
    ):
        raise ValueError(
            f"excluded must be [Q, E] integer ids, got {excluded.shape} {excluded.dtype}."
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    """One equivalence-test case: shapes and how the inputs are drawn."""

    name: str  # Test id.
    num_queries: int  # Q.
    num_items: int  # N.
    dim: int  # D.
    k: int  # Results per query.
    num_excluded: int = 0  # E ids per query (some -1 padding); 0 = no exclusion list.
    ties: bool = False  # Embeddings in {-1, 0, 1}: many exactly equal scores.
    all_seen_rows: int = 0  # Leading queries whose exclusion list covers the catalogue.

    def inputs(self, dtype, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """(queries [Q, D], items [N, D], excluded [Q, E] int32 or None) in `dtype`."""
        rng = np.random.default_rng(seed)
        shape_q, shape_n = (self.num_queries, self.dim), (self.num_items, self.dim)
        if self.ties:
            queries, items = rng.integers(-1, 2, shape_q), rng.integers(-1, 2, shape_n)
        else:
            queries, items = rng.normal(size=shape_q), rng.normal(size=shape_n)
        excluded = None
        if self.num_excluded:
            excluded = rng.integers(-1, self.num_items, (self.num_queries, self.num_excluded))
            everything = np.resize(np.arange(self.num_items), self.num_excluded)
            excluded[: self.all_seen_rows] = everything
        return (
            jnp.asarray(queries, dtype),
            jnp.asarray(items, dtype),
            None if excluded is None else jnp.asarray(excluded, jnp.int32),
        )


CASES = (
    Case(name="plain", num_queries=5, num_items=300, dim=16, k=10),
    Case(name="ties", num_queries=6, num_items=256, dim=16, k=20, num_excluded=8, ties=True),
    Case(name="ragged_catalogue", num_queries=19, num_items=333, dim=24, k=7, num_excluded=5),
    Case(name="k_above_candidates", num_queries=4, num_items=40, dim=16, k=48, num_excluded=30),
    Case(
        name="all_seen_rows",
        num_queries=6,
        num_items=24,
        dim=8,
        k=5,
        num_excluded=40,
        all_seen_rows=3,
    ),
    Case(name="tiny_catalogue", num_queries=3, num_items=5, dim=16, k=3, ties=True),
)
