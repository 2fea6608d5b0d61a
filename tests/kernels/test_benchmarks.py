"""The kernel benchmarks run on tiny shapes, and the results table renders."""

import importlib.util
import json
from pathlib import Path

from recjax_kernels.embedding_bag import benchmark as bag_benchmark
from recjax_kernels.score_top_k import benchmark as top_k_benchmark

REPO = Path(__file__).resolve().parents[2]


def test_top_k_benchmark_naive_holds_the_score_matrix_and_fused_does_not():
    shape = {"num_items": 40_000, "dim": 16, "batch": 32, "k": 5, "repeats": 1}
    naive = top_k_benchmark.run("naive", **shape)
    fused = top_k_benchmark.run("blocked", **shape)
    assert naive["xla_temp_bytes"] >= 32 * 40_000 * 4 > 2 * fused["xla_temp_bytes"]
    assert fused["seconds"] > 0 and fused["bytes_read"] == (40_000 + 32) * 16 * 4


def test_bag_benchmark_runs_every_method():
    shape = {"num_rows": 100, "dim": 16, "num_bags": 8, "bag_size": 4, "repeats": 1}
    for method in ("naive", "reference", "blocked"):
        result = bag_benchmark.run(method, **shape)
        assert result["bags_per_second"] > 0 and result["bytes_gathered"] == 8 * 4 * 16 * 4


def test_results_table_renders_into_both_readmes():
    path = REPO / "experiments" / "kernel_benchmark.py"
    spec = importlib.util.spec_from_file_location("kernel_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = json.loads((REPO / "experiments" / "results" / "kernels.json").read_text())
    table = module.table_markdown(results)
    assert all(f"| {batch:,} |" in table for batch in module.BATCHES)
    for readme in (module.README, module.KERNELS_README):
        assert table in readme.read_text(), f"rerun the benchmark with --readme ({readme})"
