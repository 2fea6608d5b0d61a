"""Embedding tables at scale: row-sparse vs dense updates, and training on 1 vs 8 devices.

    python experiments/embedding_benchmark.py                 # ~10 min on 2 CPUs, 24 GiB
    python experiments/embedding_benchmark.py --readme        # also rewrites the README table

Part 1, tables of 1M, 10M, 20M and 50M rows × 64 float32 dims and one fixed batch (4,096
examples × 20 ids, drawn from a Zipf(1.05) law over 1M ranks with seed 0, then spread
over the table by a fixed bijective hash so every size sees the same duplicates):

- lookup: rows/s of a jitted gather `table[ids]`;
- row-sparse steps, table and optimizer state donated (updated in place):
  `unique_rows` → `gather_rows` → gradient of a small loss (sum-pooled rows, linear
  regression) w.r.t. the gathered rows → `rowwise_adagrad_rows_update` (state: V floats),
  and → `adagrad_rows_update` (state: V×64 floats) where it fits;
- the dense baseline: `jax.grad` through `table[ids]` (a [V, 64] gradient) +
  `optax.adagrad`, donated, where table + gradient + accumulator fit.

A configuration whose estimated bytes do not fit the memory budget (the smaller of
20 GiB and what the machine has free, minus 2 GiB) is skipped and recorded as
`"skipped": "needs ~N GiB"`; a watchdog also kills any worker whose resident memory
passes 20 GiB. Each (size, method) runs in its own subprocess, so `peak_rss` — the
worker's `ru_maxrss`, including the ~0.3 GiB of the Python + JAX runtime — belongs to
that configuration alone. Times: compile and one warm-up step first, then 5 repeats
(each ≥ ~0.5 s of steps, `block_until_ready` after every step); the median repeat is
reported, and the fastest too. `rows/s` counts looked-up ids (81,920 a step), not
distinct rows. Tables are filled with a cheap deterministic pattern rather than random
numbers (the values do not change the work; a 50M-row normal draw would take longer than
the benchmark).

Each timed run also records its minor page faults and CPU time (user, kernel) per step
(`getrusage`). Under glibc's default malloc, XLA:CPU's per-step temporaries (a few
[81,920, 64] buffers) live in thread arenas whose heaps are unmapped when freed, so every
step faults them in again (~16k faults), and that kernel time is part of the step. Every
configuration therefore runs twice: under the default malloc, and with `GLIBC_TUNABLES`
set to keep the heap (`ALLOCATORS`).

Part 2, training throughput (examples/s) of the two-tower and SASRec smoke experiments
(`online_retail.py:smoke`, `sequential.py:beauty_sasrec_smoke`; `--devices-only` re-times
just this part) through `recjax.training.trainer.train`, 60 steps, read from the run's metrics.jsonl
(`train/examples_per_sec`, median of the 10-step windows after the first, which holds
the compile), with `XLA_FLAGS=--xla_force_host_platform_device_count=8` and a mesh of
data=8 vs data=1, plus a process without the flag. The 8 fake CPU devices share the
machine's 2 real cores, so this measures the overhead of sharding the step 8 ways, not a
speed-up.

Writes experiments/results/embeddings.json; `table_markdown(results)` renders the README
table (between the `results:embeddings` markers, with `--readme`). A GPU run is the same
script on a GPU machine (none was available when these numbers were measured): part 1's
budget then comes from the device's memory and the device's peak bytes are recorded too;
part 2 always runs on CPU devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXPERIMENTS = Path(__file__).resolve().parent
RESULTS = EXPERIMENTS / "results" / "embeddings.json"

SIZES = (1_000_000, 10_000_000, 20_000_000, 50_000_000)  # 20M: the largest dense run here
DIM = 64
BATCH, IDS_PER_EXAMPLE = 4096, 20
ZIPF_EXPONENT, ZIPF_RANKS = 1.05, 1_000_000  # ranks ≤ the smallest table's rows
HASH_MULTIPLIER = 2_654_435_761  # a prime: rank → row is a bijection for V = 2^a·5^b
LEARNING_RATE = 0.05
GIB = 2**30
PROCESS_LIMIT = 20 * GIB  # no worker may grow past this (the watchdog kills it)
HEADROOM = 2 * GIB  # left to the rest of the machine
METHODS = ("rowwise", "adagrad", "dense")
# Each (size, method) runs under both: glibc's default malloc, and malloc told to keep its
# heap (one arena, chunks ≤ 32 MiB from the heap, never trimmed below 4 GiB, grown 256 MiB
# at a time), so that a step's temporaries reuse memory that is already mapped.
ALLOCATORS = {
    "default": "",
    "kept heap": "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=33554432:"
    "glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456",
}
MESHES = (("1 device (no flag)", 1, 1), ("8 devices, data=1", 8, 1), ("8 devices, data=8", 8, 8))
# (model, experiment): smoke configs timed on each mesh; examples are (query, item) pairs
# for the two-tower and whole user sequences for SASRec.
TRAINING_EXPERIMENTS = (
    ("two-tower", "online_retail.py:smoke"),
    ("SASRec", "sequential.py:beauty_sasrec_smoke"),
)


def zipf_ids(num_rows: int, seed: int = 0) -> np.ndarray:
    """The fixed [BATCH, IDS_PER_EXAMPLE] int32 batch for a table of `num_rows` rows."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, ZIPF_RANKS + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    ranks = rng.choice(ZIPF_RANKS, size=(BATCH, IDS_PER_EXAMPLE), p=weights / weights.sum())
    return ((ranks.astype(np.int64) * HASH_MULTIPLIER) % num_rows).astype(np.int32)


def estimated_bytes(method: str, num_rows: int) -> int:
    """What a configuration must hold at once: table, gradient, optimizer state."""
    table = num_rows * DIM * 4
    return {
        "rowwise": table + num_rows * 4,  # table + one float per row
        "adagrad": 2 * table,  # table + [V, D] accumulator
        "dense": 3 * table,  # table + [V, D] gradient + [V, D] accumulator
    }[method]


# ----------------------------------------------------------------------------- workers


def _peak_memory(jax) -> dict:
    peak = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        peak["peak_device_bytes"] = int(stats["peak_bytes_in_use"])
    return peak


def _time_steps(step, repeats: int) -> dict:
    """Compiles (first call), warms up, then times `repeats` runs of ≥ ~0.5 s of steps;
    also counts the page faults and CPU time (user, kernel) of the timed steps."""
    start = time.perf_counter()
    step()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    step()
    warm = time.perf_counter() - start
    steps_per_repeat = max(1, int(0.5 / max(warm, 1e-6)))
    seconds = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps_per_repeat):
            step()
        seconds.append((time.perf_counter() - start) / steps_per_repeat)
    after = resource.getrusage(resource.RUSAGE_SELF)
    timed_steps = repeats * steps_per_repeat
    median = statistics.median(seconds)
    ids = BATCH * IDS_PER_EXAMPLE
    return {
        "compile_seconds": compile_seconds,
        "steps_per_repeat": steps_per_repeat,
        "step_seconds": seconds,
        "median_step_seconds": median,
        "min_step_seconds": min(seconds),
        "steps_per_sec": 1.0 / median,
        "rows_per_sec": ids / median,
        "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / timed_steps,
        "system_seconds_per_step": (after.ru_stime - before.ru_stime) / timed_steps,
        "user_seconds_per_step": (after.ru_utime - before.ru_utime) / timed_steps,
    }


def table_worker(method: str, num_rows: int, repeats: int) -> dict:
    """Times one (method, table size) in this process; returns its results."""
    import jax
    import jax.numpy as jnp
    import optax

    from recjax.training import sparse_optimizer as sparse

    ids_np = zipf_ids(num_rows)
    ids = jnp.asarray(ids_np)
    rng = np.random.default_rng(1)
    weights_d = jnp.asarray(rng.normal(size=DIM) / np.sqrt(DIM), jnp.float32)
    targets_b = jnp.asarray(rng.normal(size=BATCH), jnp.float32)

    @jax.jit
    def make_table():
        # Fused into one pass: no [V, D] temporaries besides the table itself.
        rows = jax.lax.broadcasted_iota(jnp.float32, (num_rows, DIM), 0)
        cols = jax.lax.broadcasted_iota(jnp.float32, (num_rows, DIM), 1)
        return 0.05 * jnp.sin(0.618 * rows + 1.7 * cols)

    def loss_fn(emb_bld, weights_d, targets_b):
        pooled_bd = emb_bld.sum(axis=1)
        return jnp.mean((pooled_bd @ weights_d - targets_b) ** 2)

    carry = {"table": jax.block_until_ready(make_table())}  # the step swaps it for its output
    result = {
        "unique_rows_per_step": int(len(np.unique(ids_np))),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }

    if method == "rowwise":
        lookup = jax.jit(lambda t, i: jnp.take(t, i, axis=0))
        result["lookup"] = _time_steps(
            lambda: jax.block_until_ready(lookup(carry["table"], ids)), repeats
        )
        del result["lookup"]["steps_per_sec"]

    if method in ("rowwise", "adagrad"):
        init, update = {
            "rowwise": (sparse.init_rowwise_adagrad, sparse.rowwise_adagrad_rows_update),
            "adagrad": (sparse.init_adagrad, sparse.adagrad_rows_update),
        }[method]
        size = ids.size  # static bound on the distinct ids of a batch

        def sparse_step(table, state, ids, weights_d, targets_b):
            row_ids, local = sparse.unique_rows(ids, size=size, num_rows=num_rows)
            rows = sparse.gather_rows(table, row_ids)
            loss, grad_rows = jax.value_and_grad(lambda r: loss_fn(r[local], weights_d, targets_b))(
                rows
            )
            table, state = update(table, state, row_ids, grad_rows, learning_rate=LEARNING_RATE)
            return table, state, loss

        step_fn = jax.jit(sparse_step, donate_argnums=(0, 1))
        carry["state"] = jax.jit(init)(carry["table"])
    else:
        tx = optax.adagrad(LEARNING_RATE)

        def dense_step(table, state, ids, weights_d, targets_b):
            loss, grad = jax.value_and_grad(lambda t: loss_fn(t[ids], weights_d, targets_b))(table)
            updates, state = tx.update(grad, state, table)
            return optax.apply_updates(table, updates), state, loss

        step_fn = jax.jit(dense_step, donate_argnums=(0, 1))
        carry["state"] = jax.jit(tx.init)(carry["table"])

    def step():
        carry["table"], carry["state"], loss = step_fn(
            carry["table"], carry["state"], ids, weights_d, targets_b
        )
        jax.block_until_ready((carry["table"], carry["state"], loss))
        carry["loss"] = float(loss)

    result["step"] = _time_steps(step, repeats)
    result["final_loss"] = carry["loss"]
    result["state_bytes"] = sum(leaf.nbytes for leaf in jax.tree.leaves(carry["state"]))
    result.update(_peak_memory(jax))
    return result


def devices_worker(spec: str, data: int, steps: int) -> dict:
    """Trains the smoke experiment `spec` on a data=`data` mesh; examples/s windows."""
    import jax

    from recjax.config import load_experiment
    from recjax.main_job import load_data
    from recjax.sharding.mesh import MeshConfig
    from recjax.training.metrics_writer import read_metrics
    from recjax.training.trainer import train

    config = load_experiment(str(EXPERIMENTS / spec))
    config = dataclasses.replace(
        config,
        mesh=MeshConfig(data=data, model=1),
        train=dataclasses.replace(config.train, max_steps=steps, log_every_steps=10),
    )
    data_ = load_data(config, say=lambda _: None)
    with tempfile.TemporaryDirectory() as workdir:
        train(config, data_, workdir, progress=False)
        records = read_metrics(workdir)
    windows = [record["train/examples_per_sec"] for record in records if "train/loss" in record]
    return {
        "devices": len(jax.devices()),
        "mesh_data": data,
        "steps": steps,
        "batch_size": config.train.batch.batch_size,
        "window_examples_per_sec": windows,
        "examples_per_sec": statistics.median(windows[1:]),
        **_peak_memory(jax),
    }


# ------------------------------------------------------------------------------ parent


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return PROCESS_LIMIT


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run_worker(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs this file as a worker; kills it if its resident memory passes PROCESS_LIMIT."""
    process = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, _rss(process.pid))
        if peak > PROCESS_LIMIT:
            process.kill()
            process.wait()
            return {"skipped": f"killed: resident memory passed {PROCESS_LIMIT / GIB:.0f} GiB"}
        time.sleep(0.1)
    out = process.stdout.read()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        return {"skipped": f"worker failed (exit {process.returncode})"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def _probe() -> dict:
    """Backend and memory of the machine the workers will run on."""
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() if jax.default_backend() != "cpu" else None
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": len(jax.devices()),
        "device_bytes_limit": int(stats["bytes_limit"]) if stats else None,
        "jax": jax.__version__,
    }


def _budget(probe: dict) -> int:
    if probe["device_bytes_limit"]:  # accelerator: the tables live in its memory
        return probe["device_bytes_limit"] - HEADROOM
    return min(PROCESS_LIMIT, _mem_available() - HEADROOM)


def _run_table(allocator: str, tunables: str, num_rows: int, probe, repeats, say) -> dict:
    """Every method on one table size, each in its own worker under `tunables`."""
    entry = {
        "allocator": allocator,
        "rows": num_rows,
        "dim": DIM,
        "table_bytes": num_rows * DIM * 4,
    }
    for method in METHODS:
        needs, budget = estimated_bytes(method, num_rows), _budget(probe)
        if needs > budget:
            entry[method] = {"skipped": f"needs ~{needs / GIB:.0f} GiB", "budget_bytes": budget}
        else:
            entry[method] = _run_worker(
                ["--table", method, str(num_rows), "--repeats", str(repeats)],
                {"GLIBC_TUNABLES": tunables},
            )
        say(f"{allocator:10s} {num_rows:>11,} rows  {method:8s}  {_summary(entry[method])}")
    for method in ("rowwise", "adagrad"):
        sparse, dense = entry[method], entry["dense"]
        if "step" in sparse and "step" in dense:
            entry[f"{method}_over_dense"] = (
                sparse["step"]["steps_per_sec"] / dense["step"]["steps_per_sec"]
            )
    return entry


def run(sizes=SIZES, repeats: int = 5, device_steps: int = 60, say=print) -> dict:
    start, load_before = time.perf_counter(), os.getloadavg()
    probe = _run_worker(["--probe"])
    say(f"machine: {probe}")
    # malloc's settings matter where the tables live in host memory.
    allocators = ALLOCATORS if probe["backend"] == "cpu" else {"default": ""}
    tables = [
        _run_table(allocator, tunables, num_rows, probe, repeats, say)
        for allocator, tunables in allocators.items()
        for num_rows in sizes
    ]
    return {
        "command": "python experiments/embedding_benchmark.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{probe['device_count']} {probe['backend']} device(s) ({probe['device_kind']})",
        "jax": probe["jax"],
        "optax": importlib.metadata.version("optax"),
        "batch": {
            "examples": BATCH,
            "ids_per_example": IDS_PER_EXAMPLE,
            "zipf_exponent": ZIPF_EXPONENT,
            "zipf_ranks": ZIPF_RANKS,
            "seed": 0,
        },
        "dim": DIM,
        "repeats": repeats,
        "tables": tables,
        "devices": run_devices(device_steps, say) if device_steps else [],
        "wall_seconds": round(time.perf_counter() - start, 1),
        # Other work on the machine disturbs the timings: 1/5/15-min load, before and after.
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def run_devices(steps: int, say=print) -> list[dict]:
    """Training throughput of each smoke experiment on 1 device and on 8 fake devices."""
    devices = []
    for model, spec in TRAINING_EXPERIMENTS:
        runs = []
        for name, count, data in MESHES:
            env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
            if count > 1:
                env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
            result = _run_worker(
                ["--devices", str(data), "--experiment", spec, "--steps", str(steps)], env
            )
            runs.append({"model": model, "name": name, **result})
            say(f"{model:10s} {name:20s} {result.get('examples_per_sec', 0):,.0f} ex/s")
        baseline = runs[1].get("examples_per_sec")
        for entry in runs:
            if baseline and "examples_per_sec" in entry:
                entry["over_8_devices_data_1"] = entry["examples_per_sec"] / baseline
        devices += runs
    return devices


def _summary(result: dict) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    step = result["step"]
    return (
        f"{step['steps_per_sec']:9.2f} steps/s  {step['rows_per_sec']:14,.0f} rows/s  "
        f"{1e3 * step['median_step_seconds']:7.1f} ms (min {1e3 * step['min_step_seconds']:.1f})  "
        f"{step['minor_faults_per_step']:8,.0f} faults, "
        f"kernel {1e3 * step['system_seconds_per_step']:6.1f} ms  "
        f"peak RSS {result['peak_rss_bytes'] / GIB:5.2f} GiB"
    )


def _steps(result: dict) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    return f"{result['step']['steps_per_sec']:,.2f}"


def _rss_cell(result: dict) -> str:
    return "—" if "skipped" in result else f"{result['peak_rss_bytes'] / GIB:.1f}"


def table_markdown(results: dict) -> str:
    """The README tables: per malloc and table size, then training examples/s per mesh."""
    lines = [
        "| malloc | rows × 64 | lookup rows/s | row-wise Adagrad steps/s (rows/s) | "
        "row-wise ms/step: median (fastest) | row-wise CPU ms/step: user / kernel (page faults) | "
        "sparse Adagrad steps/s | dense Adagrad steps/s | row-wise / dense | "
        "peak RSS GiB (row-wise / sparse / dense) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for entry in results["tables"]:
        rowwise = entry["rowwise"]
        if "skipped" in rowwise:
            lookup = rowwise_cell = milliseconds = kernel = "—"
        else:
            step = rowwise["step"]
            lookup = f"{rowwise['lookup']['rows_per_sec'] / 1e6:,.1f} M"
            rowwise_cell = f"{_steps(rowwise)} ({step['rows_per_sec'] / 1e6:,.2f} M)"
            milliseconds = (
                f"{1e3 * step['median_step_seconds']:.0f} ({1e3 * step['min_step_seconds']:.0f})"
            )
            kernel = (
                f"{1e3 * step['user_seconds_per_step']:.0f} / "
                f"{1e3 * step['system_seconds_per_step']:.0f} "
                f"({step['minor_faults_per_step']:,.0f})"
            )
        ratio = entry.get("rowwise_over_dense")
        lines.append(
            f"| {entry['allocator']} | {entry['rows'] / 1e6:g}M | {lookup} | {rowwise_cell} | "
            f"{milliseconds} | {kernel} | {_steps(entry['adagrad'])} | "
            f"{_steps(entry['dense'])} | "
            + (f"{ratio:,.1f}×" if ratio else "—")
            + " | "
            + " / ".join(_rss_cell(entry[method]) for method in METHODS)
            + " |"
        )
    batch = results["batch"]
    lines += [
        "",
        f"Batch: {batch['examples']:,} examples × {batch['ids_per_example']} ids, "
        f"Zipf({batch['zipf_exponent']}), "
        f"{results['tables'][0]['rowwise']['unique_rows_per_step']:,} distinct rows a step; "
        f"{results['machine']}; "
        f"jax {results['jax']}; `{results['command']}`.",
    ]
    if not results["devices"]:
        return "\n".join(lines)
    lines += [
        "",
        "| smoke training | mesh | examples/s | vs 8 devices, data=1 |",
        "|---|---|---:|---:|",
    ]
    for entry in results["devices"]:
        if "examples_per_sec" in entry:
            lines.append(
                f"| {entry['model']} | {entry['name']} | {entry['examples_per_sec']:,.0f} | "
                f"{entry['over_8_devices_data_1']:.2f}× |"
            )
        else:
            lines.append(
                f"| {entry['model']} | {entry['name']} | {entry.get('skipped', 'failed')} | — |"
            )
    lines.append("")
    lines.append("8 fake CPU devices share 2 real cores: this is sharding overhead, not speed-up.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--device-steps", type=int, default=60, help="training steps per mesh in part 2 (0: skip)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--readme", action="store_true", help="rewrite the README table")
    # Worker modes (one configuration per process, so peak RSS is its own).
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", nargs=2, metavar=("METHOD", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--devices-only",
        action="store_true",
        help="re-time only the 1-vs-8-device training, keeping the table results in --out",
    )
    parser.add_argument("--devices", type=int, metavar="DATA", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.probe:
        print("RESULT " + json.dumps(_probe()))
    elif args.table:
        print("RESULT " + json.dumps(table_worker(args.table[0], int(args.table[1]), args.repeats)))
    elif args.devices:
        print("RESULT " + json.dumps(devices_worker(args.experiment, args.devices, args.steps)))
    else:
        if args.devices_only:
            results = json.loads(args.out.read_text())
            results["devices"] = run_devices(args.device_steps)
        else:
            results = run(tuple(args.sizes), args.repeats, args.device_steps)
        markdown = table_markdown(results)
        print()
        print(markdown)
        print(f"\nwall time {results['wall_seconds']:.0f} s")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
        if args.readme:
            sys.path.insert(0, str(EXPERIMENTS))
            from readme_tables import replace_table

            replace_table("embeddings", markdown)


if __name__ == "__main__":
    main()
