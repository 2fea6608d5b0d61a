"""Argument specs of the embedding bag: the checks every entry point shares, and the named
cases the equivalence tests run (each one a corner of the contract in `reference.py`)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .reference import COMBINERS

DTYPES = (jnp.float32, jnp.bfloat16)


def check_args(table: jax.Array, ids: jax.Array, weights: jax.Array | None, combiner: str) -> None:
    """Raises ValueError unless the arguments fit the contract of `reference.embedding_bag`."""
    if table.ndim != 2 or table.dtype not in DTYPES:
        raise ValueError(f"table must be [V, D] in {DTYPES}, got {table.shape} {table.dtype}.")
    if ids.ndim != 2 or ids.shape[1] == 0 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"ids must be [B, L] integers with L >= 1, got {ids.shape} {ids.dtype}.")
    if weights is not None and weights.shape != ids.shape:
        raise ValueError(f"weights must have the shape of ids {ids.shape}, got {weights.shape}.")
    if combiner not in COMBINERS:
        raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    """One equivalence-test case: shapes and how the inputs are drawn."""

    name: str  # Test id.
    num_bags: int  # B.
    bag_size: int  # L.
    num_rows: int  # V.
    dim: int  # D.
    weighted: bool = True  # Random weights, else None (all ones).
    pad_fraction: float = 0.3  # Share of ids set to pad_id.
    empty_bags: int = 0  # Leading bags made all padding.
    zero_weight_bags: int = 0  # The next bags keep their ids but get all-zero weights.
    pad_id: int = -1

    def inputs(self, dtype, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """(table [V, D] in `dtype`, ids [B, L] int32, weights [B, L] float32 or None)."""
        rng = np.random.default_rng(seed)
        table = rng.normal(size=(self.num_rows, self.dim))
        shape = (self.num_bags, self.bag_size)
        low = 1 if self.pad_id == 0 else 0  # Row 0 is padding when pad_id is 0.
        ids = rng.integers(low, self.num_rows, shape)
        ids[rng.random(shape) < self.pad_fraction] = self.pad_id
        ids[: self.empty_bags] = self.pad_id
        weights = rng.uniform(0.1, 2.0, shape) if self.weighted else None
        if self.zero_weight_bags:
            if weights is None:
                raise ValueError("zero_weight_bags needs weighted=True.")
            weights[self.empty_bags : self.empty_bags + self.zero_weight_bags] = 0.0
        return (
            jnp.asarray(table, dtype),
            jnp.asarray(ids, jnp.int32),
            None if weights is None else jnp.asarray(weights, jnp.float32),
        )


CASES = (
    Case(name="unweighted", num_bags=8, bag_size=5, num_rows=50, dim=16, weighted=False),
    Case(name="ragged_bags", num_bags=37, bag_size=7, num_rows=100, dim=32),
    Case(
        name="empty_and_zero_weight",
        num_bags=12,
        bag_size=4,
        num_rows=30,
        dim=16,
        empty_bags=3,
        zero_weight_bags=3,
    ),
    Case(name="wide_rows", num_bags=9, bag_size=3, num_rows=20, dim=256),
    Case(name="pad_row_zero", num_bags=10, bag_size=6, num_rows=40, dim=16, pad_id=0, empty_bags=2),
    Case(name="odd_dim", num_bags=6, bag_size=3, num_rows=20, dim=24),
)
