"""The embedding benchmark's workers measure what they claim, and its README table is current."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = 5_000


@pytest.fixture(scope="module")
def benchmark():
    path = REPO / "experiments" / "embedding_benchmark.py"
    spec = importlib.util.spec_from_file_location("embedding_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_is_the_same_ranks_hashed_onto_each_table(benchmark):
    small, large = benchmark.zipf_ids(1_000_000), benchmark.zipf_ids(10_000_000)
    assert small.shape == (benchmark.BATCH, benchmark.IDS_PER_EXAMPLE)
    # A bijection from ranks to rows: every size sees the same pattern of repeats.
    assert len(np.unique(small)) == len(np.unique(large))
    assert small.max() < 1_000_000 <= large.max()


@pytest.mark.parametrize("method, state_floats", [("rowwise", ROWS), ("dense", ROWS * 64)])
def test_table_worker_times_steps_and_counts_their_kernel_work(benchmark, method, state_floats):
    result = benchmark.table_worker(method, ROWS, repeats=2)
    assert result["unique_rows_per_step"] == len(np.unique(benchmark.zipf_ids(ROWS)))
    assert result["state_bytes"] == 4 * state_floats
    step = result["step"]
    assert len(step["step_seconds"]) == 2
    assert step["min_step_seconds"] <= step["median_step_seconds"]
    assert step["minor_faults_per_step"] >= 0 and step["user_seconds_per_step"] > 0
    assert np.isfinite(result["final_loss"])
    assert ("lookup" in result) == (method == "rowwise")


def test_readme_table_is_rendered_from_the_results(benchmark):
    results = json.loads((REPO / "experiments" / "results" / "embeddings.json").read_text())
    runs = [(entry["allocator"], entry["rows"]) for entry in results["tables"]]
    assert runs == [(name, rows) for name in benchmark.ALLOCATORS for rows in benchmark.SIZES]
    assert {entry["rowwise"]["glibc_tunables"] for entry in results["tables"]} == set(
        benchmark.ALLOCATORS.values()
    )
    table = benchmark.table_markdown(results)
    assert table in (REPO / "README.md").read_text(), "rerun the benchmark with --readme"
