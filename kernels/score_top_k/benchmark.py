"""Benchmark: one score + top-k method on one shape, in this process; prints one JSON line.

    python -m recjax_kernels.score_top_k.benchmark --method blocked --batch 256

Methods: "naive" (`scores = queries @ items.T; lax.top_k`, the [Q, N] matrix in memory)
or an implementation of the api ("reference", "blocked", "pallas"). Items and queries are
standard normal float32, made on the device (values do not change the work). Reported:
median seconds per call, queries/s, the first call's peak memory rise and XLA's planned
temporary bytes (`recjax_kernels.benchmarking`), and the achieved bandwidth of reading
queries + items once per call (the least any method must move; on a GPU compare it with
the device's peak).
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp

from ..benchmarking import measure_call
from .api import IMPLEMENTATIONS


@functools.partial(jax.jit, static_argnames="k")
def naive_top_k(queries: jax.Array, items: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The unfused baseline: the whole [Q, N] score matrix, then `lax.top_k`."""
    scores_qn = jnp.dot(queries, items.T, precision=jax.lax.Precision.HIGHEST)
    return jax.lax.top_k(scores_qn, k)


def run(
    method: str, *, num_items: int, dim: int, batch: int, k: int, repeats: int = 3
) -> dict[str, object]:
    """Times `method` on [batch, dim] queries against [num_items, dim] items."""
    items_key, queries_key = jax.random.split(jax.random.key(0))
    # Made on the device and waited for, so the measured call allocates only its own work.
    items, queries = jax.block_until_ready(
        (
            jax.random.normal(items_key, (num_items, dim), jnp.float32),
            jax.random.normal(queries_key, (batch, dim), jnp.float32),
        )
    )
    fn = naive_top_k if method == "naive" else IMPLEMENTATIONS[method]
    measured = measure_call(fn, queries, items, k=k, repeats=repeats)
    bytes_read = (num_items + batch) * dim * items.dtype.itemsize
    return {
        "method": method,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "num_items": num_items,
        "dim": dim,
        "batch": batch,
        "k": k,
        **measured,
        "queries_per_second": batch / measured["seconds"],
        "bytes_read": bytes_read,
        "bandwidth_bytes_per_second": bytes_read / measured["seconds"],
    }


def main() -> None:
    """Command line: one JSON line of `run`'s results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["naive", *IMPLEMENTATIONS], required=True)
    parser.add_argument("--num-items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = run(
        args.method,
        num_items=args.num_items,
        dim=args.dim,
        batch=args.batch,
        k=args.k,
        repeats=args.repeats,
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
