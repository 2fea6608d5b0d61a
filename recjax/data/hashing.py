"""Stable, vectorised hashing of raw ids and tokens into buckets (same answer on every run)."""

from __future__ import annotations

import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def stable_hash(values: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a hash of each integer or unicode value, computed column-wise.

    Unlike Python's `hash`, the result does not depend on the process, so hashed
    buckets are reproducible across training and serving.
    """
    values = np.asarray(values)
    with np.errstate(over="ignore"):
        if values.dtype.kind in "iu":
            return (values.astype(np.uint64) ^ _FNV_OFFSET) * _FNV_PRIME * _MIX
        if values.dtype.kind != "U":
            raise TypeError(f"Can hash integer or unicode arrays, not {values.dtype}.")
        width = max(values.dtype.itemsize // 4, 1)
        codes = np.ascontiguousarray(values).view(np.uint32).reshape(len(values), width)
        # Only a string's own characters count, not the NUL padding up to the array's
        # width: "red" must hash the same alone as next to "lantern".
        lengths = np.strings.str_len(values)
        hashed = np.full(len(values), _FNV_OFFSET, dtype=np.uint64)
        for column in range(width):  # loop over characters, vectorised over values
            mixed = (hashed ^ codes[:, column].astype(np.uint64)) * _FNV_PRIME
            hashed = np.where(column < lengths, mixed, hashed)
        return hashed


def hash_to_buckets(values: np.ndarray, num_buckets: int) -> np.ndarray:
    """Maps each value to one of `num_buckets` buckets (int32)."""
    if num_buckets <= 0:
        raise ValueError(f"num_buckets must be positive, got {num_buckets}.")
    return (stable_hash(values) % np.uint64(num_buckets)).astype(np.int32)
