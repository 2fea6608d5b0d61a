"""The notebooks run to the end in small mode and show sensible numbers; every .ipynb is
its paired jupytext .py source, without outputs.

Each notebook runs as a script (its percent-format .py, which the sync test proves is the
.ipynb's code) in a fresh process, as a reader's kernel would: one CPU device, matplotlib's
Agg backend, `RECJAX_NOTEBOOK_SIZE=small`, runs written under a temporary
`RECJAX_NOTEBOOK_WORKDIR`. Each notebook saves its key numbers as
`<workdir>/<name>_small/summary.json`, which the tests read.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("quickstart", "sequences", "funnel")


def run_notebook(name: str, workdir: Path) -> dict:
    """Runs notebooks/<name>.py in small mode; returns its summary.json."""
    env = {
        **os.environ,
        "RECJAX_NOTEBOOK_SIZE": "small",
        "RECJAX_NOTEBOOK_WORKDIR": str(workdir),
        "MPLBACKEND": "Agg",
        # The test process fakes 8 devices (conftest); a reader's kernel has one.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
    }
    result = subprocess.run(
        [sys.executable, str(NOTEBOOKS / f"{name}.py")],
        cwd=NOTEBOOKS,  # where Jupyter starts a notebook's kernel
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-4000:]}"
    out = workdir / f"{name}_small"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["size"] == "small"
    return summary | {"out": out}


def assert_figures(out: Path, *names: str) -> None:
    for figure in names:
        path = out / figure
        assert path.is_file() and path.stat().st_size > 10_000, path


def test_quickstart(tmp_path):
    summary = run_notebook("quickstart", tmp_path)
    assert summary["steps"] == 200
    assert summary["last_loss"] < summary["first_loss"] - 1.0  # it learned
    recall = summary["recall@10"]
    assert set(recall) == {"two_tower", "popularity", "cooccurrence"}
    assert recall["two_tower"] > recall["popularity"], recall
    for name, curve in summary["recall_at_k"].items():
        assert 0 <= curve[0] <= curve[-1] <= 1 and np.all(np.diff(curve) >= 0), name
    # The K=10 point of the curve is the job's own recall@10 (same queries, same model).
    for name, value in recall.items():
        np.testing.assert_allclose(summary["recall_at_k"][name][3], value, err_msg=name)
    assert len(summary["recommended"]) == 10
    assert_figures(summary["out"], "learning_curve.png", "recall_at_k.png")


def test_sequences(tmp_path, shared_data):
    shared_data("s3rec-seqrec/Beauty.txt")  # skips (or fails in CI) without the data
    summary = run_notebook("sequences", tmp_path)
    assert summary["layers"] == 2 and summary["heads"] == 2
    assert summary["attention_shape"] == [300, 2, 50, 50]
    # Attention rows are distributions over the past and present of the sequence only.
    assert summary["row_sum_error"] < 1e-5
    assert summary["outside_weight"] < 1e-6
    assert set(summary["metrics"]) == {"sasrec", "bag_of_events", "popularity", "cooccurrence"}
    for name, metrics in summary["metrics"].items():
        assert 0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= 1, name
    assert_figures(summary["out"], "attention_one_user.png", "attention_by_recency.png")


def test_funnel(tmp_path):
    summary = run_notebook("funnel", tmp_path)
    counts = summary["candidates"]
    assert list(counts) == [
        "catalogue",
        "retrieval",
        "consumed_removed",
        "pre_ranking",
        "ranking",
        "re_ranking",
    ]
    assert counts["catalogue"] > counts["retrieval"] == 1000
    assert (counts["pre_ranking"], counts["ranking"], counts["re_ranking"]) == (200, 50, 10)
    assert list(counts.values()) == sorted(counts.values(), reverse=True)  # never grows
    assert summary["k"] == len(summary["items"]) == 10
    assert set(summary["latency_ms"]) == {"user_tower", *list(counts)[1:]}
    assert all(ms > 0 for ms in summary["latency_ms"].values())
    assert sum(summary["latency_ms"].values()) <= summary["request_ms"]
    assert_figures(summary["out"], "one_request.png", "latency.png")


# ----------------------------------------------------------------- pairing


def test_every_notebook_is_paired():
    assert {p.stem for p in NOTEBOOKS.glob("*.py")} == set(NAMES)
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_in_sync_with_its_py_and_has_no_outputs(name):
    source = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    regenerate = f"run `jupytext --sync notebooks/{name}.py`"
    assert [(c.cell_type, c.source) for c in notebook.cells] == [
        (c.cell_type, c.source) for c in source.cells
    ], f"notebooks/{name}.ipynb differs from notebooks/{name}.py: {regenerate}"
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent", regenerate
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"notebooks/{name}.ipynb has outputs: clear them, or {regenerate}"
            )
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "What you will learn" in first.source
