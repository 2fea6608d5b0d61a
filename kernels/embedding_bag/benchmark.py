"""Benchmark: one embedding-bag method on one shape, in this process; prints one JSON line.

    python -m recjax_kernels.embedding_bag.benchmark --method blocked

Methods: "naive" (gather all [B, L, D] rows, multiply by the weights, sum over L) or an
implementation of the api ("reference", "blocked", "pallas"). Inputs are made on the
device: a standard normal float32 table, ids uniform over it with a quarter of them
padding, weights uniform in [0.5, 1.5); combiner "mean". Reported: median seconds per
call, bags/s and ids/s, the first call's peak memory rise and XLA's temporary bytes
(`recjax_kernels.benchmarking`), and the achieved bandwidth of the gathered rows
(B · L · D elements, the least any method must read; on a GPU compare it with the
device's peak).
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp

from ..benchmarking import measure_call
from .api import IMPLEMENTATIONS
from .reference import Combiner, pooling_weights

PAD_FRACTION = 0.25


@functools.partial(jax.jit, static_argnames=("combiner", "pad_id"))
def naive_embedding_bag(
    table: jax.Array,
    ids: jax.Array,
    weights: jax.Array | None = None,
    *,
    combiner: Combiner = "sum",
    pad_id: int = -1,
) -> jax.Array:
    """The unfused baseline: gather the [B, L, D] rows, weight them, sum over L."""
    rows_bl, weights_bl = pooling_weights(ids, weights, combiner, pad_id)
    rows_bld = jnp.take(table, rows_bl, axis=0)
    return (rows_bld * weights_bl[..., None]).sum(axis=1).astype(table.dtype)


def run(
    method: str, *, num_rows: int, dim: int, num_bags: int, bag_size: int, repeats: int = 5
) -> dict[str, object]:
    """Times `method` pooling [num_bags, bag_size] ids from a [num_rows, dim] table."""
    table_key, ids_key, pad_key, weights_key = jax.random.split(jax.random.key(0), 4)
    shape = (num_bags, bag_size)
    ids = jax.random.randint(ids_key, shape, 0, num_rows)
    # Made on the device and waited for, so the measured call allocates only its own work.
    table, ids, weights = jax.block_until_ready(
        (
            jax.random.normal(table_key, (num_rows, dim), jnp.float32),
            jnp.where(jax.random.uniform(pad_key, shape) < PAD_FRACTION, -1, ids),
            jax.random.uniform(weights_key, shape, jnp.float32, 0.5, 1.5),
        )
    )
    fn = naive_embedding_bag if method == "naive" else IMPLEMENTATIONS[method]
    measured = measure_call(fn, table, ids, weights, combiner="mean", repeats=repeats)
    bytes_gathered = num_bags * bag_size * dim * table.dtype.itemsize
    return {
        "method": method,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "num_rows": num_rows,
        "dim": dim,
        "num_bags": num_bags,
        "bag_size": bag_size,
        **measured,
        "bags_per_second": num_bags / measured["seconds"],
        "ids_per_second": num_bags * bag_size / measured["seconds"],
        "bytes_gathered": bytes_gathered,
        "bandwidth_bytes_per_second": bytes_gathered / measured["seconds"],
    }


def main() -> None:
    """Command line: one JSON line of `run`'s results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["naive", *IMPLEMENTATIONS], required=True)
    parser.add_argument("--num-rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--num-bags", type=int, default=4096)
    parser.add_argument("--bag-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = run(
        args.method,
        num_rows=args.num_rows,
        dim=args.dim,
        num_bags=args.num_bags,
        bag_size=args.bag_size,
        repeats=args.repeats,
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
