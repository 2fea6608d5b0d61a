"""Runs the retrieval experiments and regenerates their results files and the README table.

    python experiments/make_tables.py                   # all experiments (~10 min on 2 CPUs)
    python experiments/make_tables.py online_retail     # one of them

Each experiment trains from scratch in a fresh work directory, then writes
`experiments/results/<name>.json`; the README table between the `results:retrieval`
markers is rebuilt from every results file present. Numbers are never edited by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_tables import README, replace_table  # noqa: E402

from recjax.config import load_experiment  # noqa: E402
from recjax.main_job import train_and_evaluate  # noqa: E402

EXPERIMENTS = Path(__file__).resolve().parent
RESULTS = EXPERIMENTS / "results"
NAMES = ("online_retail", "movielens_100k", "amazon_beauty")
COLUMNS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr")


def run(name: str) -> dict:
    config = load_experiment(str(EXPERIMENTS / f"{name}.py"))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        results = train_and_evaluate(config, workdir, progress=False)
    results.update(
        command=f"python experiments/make_tables.py {name}",
        wall_seconds=round(time.perf_counter() - start, 1),
        machine=f"{platform.machine()}, {len(jax.devices())} {jax.default_backend()} device(s)",
        jax=jax.__version__,
        exclude_seen=config.eval.exclude_seen,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def table() -> str:
    """The metrics table (one row per dataset × model), then the ScaNN-vs-exact table."""
    metrics = [
        "| dataset | model | " + " | ".join(COLUMNS) + " | seen items | run time |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|---:|",
    ]
    retrieval = [
        "| dataset | items | ScaNN recall@10 vs exact | ScaNN queries/s | "
        "exact queries/s | index |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in NAMES:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        seen = "excluded" if results["exclude_seen"] else "kept"
        for model, values in results["metrics"].items():
            metrics.append(
                f"| {name} | {model} | "
                + " | ".join(f"{values[column]:.4f}" for column in COLUMNS)
                + f" | {seen} | {results['wall_seconds']:.0f} s |"
            )
        scann = results["retrieval"]
        index = scann["index"]
        kind = (
            "brute force"
            if index.get("num_leaves") is None
            else f"tree {index['leaves_to_search']}/{index['num_leaves']} leaves + AH"
        )
        retrieval.append(
            f"| {name} | {scann['num_items']:,} | "
            f"{scann['scann_recall@10_vs_exact']:.3f} | {scann['scann_qps']:,.0f} | "
            f"{scann['exact_qps']:,.0f} | {kind} |"
        )
    return "\n".join(metrics + [""] + retrieval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(NAMES)} (default: all)")
    names = parser.parse_args().names or list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    for name in names:
        print(f"== {name}", flush=True)
        run(name)
    replace_table("retrieval", table())
    print(f"updated {README}")


if __name__ == "__main__":
    main()
