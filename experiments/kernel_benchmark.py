"""Fused kernels against their naive baselines: peak memory and speed.

    python experiments/kernel_benchmark.py             # ~4 min on 2 CPUs, 10 GiB free
    python experiments/kernel_benchmark.py --readme    # also rewrites the README table
    bash experiments/kernel_benchmark_gpu.sh           # on a GPU machine, < 3 min

Score + top-k: 1M items × 64 float32 dims, k = 100, batches of 64, 256 and 1,024
queries. The naive `scores = queries @ items.T; lax.top_k` against the fused path the api
picks (blocked plain JAX on CPU; the Pallas kernel on a GPU). Embedding bag: a 1M × 64
table, 4,096 bags × 32 ids (a quarter padding), "mean": naive gather + weighted sum
against the api's pick. Every (method, shape) runs in a fresh process
(`python -m recjax_kernels.<kernel>.benchmark`), so the memory peak it reports is its own:
the rise of the process's peak RSS during one compiled call (on a GPU, of the device's
peak bytes in use), next to XLA's planned temporary bytes. Times are the median of 3
calls (5 for the bag) after a compiling call. A naive run whose [Q, N] scores would not
fit in the free memory is skipped and recorded as such.

With --gpu (what kernel_benchmark_gpu.sh runs) the methods are the naive baseline, the
Pallas kernels (and the blocked bag), and each row also gets its achieved bandwidth as a
fraction of the device's peak (--peak-tbps, 4.8 for an H200): the bytes every method must
read (queries + items for top-k, the gathered rows for the bag) over the time.

Writes experiments/results/kernels.json (kernels_gpu.json with --gpu); `table_markdown`
renders the table between the `results:kernels` markers of README.md and
kernels/README.md (with --readme).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent
sys.path.insert(0, str(EXPERIMENTS))
from readme_tables import README, replace_table  # noqa: E402

RESULTS = EXPERIMENTS / "results"
KERNELS_README = EXPERIMENTS.parent / "kernels" / "README.md"
NUM_ITEMS, DIM, K = 1_000_000, 64, 100
BATCHES = (64, 256, 1024)
BAG = {"num_rows": 1_000_000, "dim": 64, "num_bags": 4096, "bag_size": 32}
METHODS = {  # (score + top-k, embedding bag) per mode
    "cpu": (("naive", "blocked"), ("naive", "blocked")),
    "gpu": (("naive", "pallas"), ("naive", "blocked", "pallas")),
}
WORKER_TIMEOUT_S = 300
SUMMARY_KEYS = (  # printed for each configuration as it finishes
    "method",
    "batch",
    "seconds",
    "peak_memory_rise_bytes",
    "fraction_of_peak_bandwidth",
    "skipped",
    "failed",
)
GIB = 2**30


def run_worker(kernel: str, **flags: object) -> dict:
    """Runs `python -m recjax_kernels.<kernel>.benchmark` with `flags`; its JSON, or the error."""
    command = [sys.executable, "-m", f"recjax_kernels.{kernel}.benchmark"]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    print(" ".join(command[1:]), flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {**flags, "failed": f"timed out after {WORKER_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {**flags, "failed": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_bytes() -> int:
    """MemAvailable of this machine (Linux)."""
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if "Avail" in line)
    return int(line.split()[1]) * 1024


def run_all(mode: str, path: Path, peak_bytes_per_second: float | None = None) -> dict:
    """Runs every configuration of `mode` ("cpu" or "gpu"), saving the results to `path`
    after each one (a run cut short keeps what it measured), and returns them. With
    `peak_bytes_per_second`, each row also gets its fraction of that bandwidth."""
    top_k_methods, bag_methods = METHODS[mode]
    results: dict = {
        "environment": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "jax": importlib.metadata.version("jax"),
            "command": " ".join(["python experiments/kernel_benchmark.py", *sys.argv[1:]]),
        },
        "peak_bandwidth_bytes_per_second": peak_bytes_per_second,
        "score_top_k": [],
        "embedding_bag": [],
    }

    def record(section: str, row: dict) -> None:
        if peak_bytes_per_second and "bandwidth_bytes_per_second" in row:
            row["fraction_of_peak_bandwidth"] = (
                row["bandwidth_bytes_per_second"] / peak_bytes_per_second
            )
        results[section].append(row)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print("   ", json.dumps({key: row[key] for key in SUMMARY_KEYS if key in row}), flush=True)

    for batch in BATCHES:
        for method in top_k_methods:
            scores_bytes = batch * NUM_ITEMS * 4
            if mode == "cpu" and method == "naive" and 2 * scores_bytes > free_bytes() - 2 * GIB:
                record("score_top_k", {"method": method, "batch": batch, "skipped": "no memory"})
                continue
            shape = {"batch": batch, "num_items": NUM_ITEMS, "dim": DIM, "k": K}
            record("score_top_k", run_worker("score_top_k", method=method, **shape))
    for method in bag_methods:
        record("embedding_bag", run_worker("embedding_bag", method=method, **BAG))
    return results


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def table_markdown(results: dict) -> str:
    """The README tables: top-k memory and speed per batch, then embedding-bag throughput."""
    by_key = {(row["method"], row["batch"]): row for row in results["score_top_k"]}
    fused_method = next(row["method"] for row in results["score_top_k"] if row["method"] != "naive")
    lines = [
        f"| queries × {NUM_ITEMS:,} items × {DIM}, k = {K} | naive s | fused s | fused speed-up "
        "| naive peak rise MiB | fused peak rise MiB | fused XLA temp MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        naive, fused = by_key[("naive", batch)], by_key[(fused_method, batch)]
        if "seconds" in naive:
            naive_s, speed_up = (
                f"{naive['seconds']:.2f}",
                f"{naive['seconds'] / fused['seconds']:.2f}×",
            )
            naive_peak = _mib(naive["peak_memory_rise_bytes"])
        else:
            naive_s, speed_up, naive_peak = naive.get("skipped", naive.get("failed")), "—", "—"
        lines.append(
            f"| {batch:,} | {naive_s} | {fused['seconds']:.2f} | {speed_up} | {naive_peak} "
            f"| {_mib(fused['peak_memory_rise_bytes'])} | {_mib(fused['xla_temp_bytes'])} |"
        )
    naive_bag = results["embedding_bag"][0]
    lines += [
        "",
        f"| embedding bag: {BAG['num_bags']:,} bags × {BAG['bag_size']} ids, "
        f"{BAG['num_rows']:,} × {BAG['dim']} table, mean | ms / call | bags/s | vs naive |",
        "|---|---:|---:|---:|",
    ]
    for row in results["embedding_bag"]:
        lines.append(
            f"| {row['method']} | {row['seconds'] * 1e3:.1f} | {row['bags_per_second']:,.0f} "
            f"| {naive_bag['seconds'] / row['seconds']:.2f}× |"
        )
    env = results["environment"]
    lines += [
        "",
        f"Fused = `{fused_method}` (the api's pick here); {env['machine']}, {env['cpus']} CPUs; "
        f"jax {env['jax']}; `{env['command']}`.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Runs the benchmark, saves the results and optionally rewrites the README table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="rewrite the README table")
    parser.add_argument("--gpu", action="store_true", help="GPU methods; kernels_gpu.json")
    parser.add_argument("--peak-tbps", type=float, default=4.8, help="device peak (H200: 4.8)")
    args = parser.parse_args()
    path = RESULTS / ("kernels_gpu.json" if args.gpu else "kernels.json")
    if args.gpu:
        run_all("gpu", path, args.peak_tbps * 1e12)
        print(f"wrote {path}")
        return
    results = run_all("cpu", path)
    print(f"wrote {path}")
    table = table_markdown(results)
    print(table)
    if args.readme:
        for readme in (README, KERNELS_README):
            replace_table("kernels", table, readme)


if __name__ == "__main__":
    main()
