"""Runs MMoE, shared-bottom and one-model-per-task on the four ranking datasets (3 seeds)
and writes experiments/results/ranking.json; with --readme, also the README table.

    python experiments/ranking_tables.py [--readme] [--smoke] [--datasets a,b]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ranking import ARCHITECTURES, DATASETS, get_config, model_config  # noqa: E402
from readme_tables import replace_table  # noqa: E402

from recjax.data.ranking_datasets import load_ranking_data  # noqa: E402
from recjax.data.splits import Role  # noqa: E402
from recjax.models.ranking import parameter_count  # noqa: E402
from recjax.training.ranking_trainer import evaluate_ranking, train_ranking  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ranking.json"
SEEDS = (0, 1, 2)
_NAMES = {"mmoe": "MMoE", "shared_bottom": "shared bottom", "single_task": "single-task"}


def run_dataset(dataset: str, smoke: bool) -> dict:
    """Every architecture x seed on one dataset: per-metric mean, std and values."""
    base = get_config(f"{dataset}-smoke" if smoke else dataset)
    data = load_ranking_data(base.data, say=lambda line: print("  " + line))
    test = data.examples.of_role(Role.TEST)
    result = {
        "examples": {role.name.lower(): int((data.examples.roles == role).sum()) for role in Role},
        "tasks": {task.name: task.kind for task in data.tasks},
        "models": {},
    }
    for architecture in ARCHITECTURES:
        config = dataclasses.replace(base, model=model_config(architecture, len(data.tasks)))
        runs, start = [], time.perf_counter()
        for seed in SEEDS:
            trained = train_ranking(dataclasses.replace(config, seed=seed), data, progress=False)
            runs.append(evaluate_ranking(trained.model, trained.state.params, test))
        seconds = time.perf_counter() - start
        metrics = {
            name: {
                "mean": float(np.mean([run[name] for run in runs])),
                "std": float(np.std([run[name] for run in runs])),
                "values": [run[name] for run in runs],
            }
            for name in runs[0]
        }
        result["models"][architecture] = {
            "parameters": parameter_count(trained.state.params),
            "seconds_per_seed": seconds / len(SEEDS),
            "metrics": metrics,
        }
        print(f"  {architecture}: {seconds:.0f} s, " + _summary(data.tasks, metrics))
    return result


def _headline(kind: str) -> str:
    return "auc" if kind == "binary" else "rmse"


def _summary(tasks, metrics: dict) -> str:
    return ", ".join(
        f"{t.name} {_headline(t.kind)} {metrics[f'{t.name}/{_headline(t.kind)}']['mean']:.4f}"
        for t in tasks
    )


def markdown(results: dict) -> str:
    """One row per (dataset, task): each architecture's test AUC (binary, higher is better)
    or RMSE (regression, lower is better), mean ± std over seeds; best mean in bold."""
    names = [_NAMES[a] for a in ARCHITECTURES]
    lines = [
        "| dataset | task | labels (test) | metric | " + " | ".join(names) + " |",
        "|---|---|---:|---|" + "---:|" * len(names),
    ]
    for dataset, result in results["datasets"].items():
        models = result["models"]
        for task, kind in result["tasks"].items():
            metric = _headline(kind)
            key = f"{task}/{metric}"
            means = [models[a]["metrics"][key]["mean"] for a in ARCHITECTURES]
            finite = [mean for mean in means if np.isfinite(mean)]
            best = (max if metric == "auc" else min)(finite) if finite else None
            cells = []
            for architecture, mean in zip(ARCHITECTURES, means, strict=True):
                cell = f"{mean:.4f} ± {models[architecture]['metrics'][key]['std']:.4f}"
                cells.append(f"**{cell}**" if mean == best else cell)
            count = int(models[ARCHITECTURES[0]]["metrics"][f"{task}/count"]["mean"])
            if metric == "rmse":
                constant = models[ARCHITECTURES[0]]["metrics"][f"{task}/rmse_constant"]["mean"]
                metric = f"rmse (test mean: {constant:.4f})"
            lines.append(
                f"| {dataset} | {task} | {count:,} | {metric} | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        "| dataset | train / valid / test examples | parameters: "
        + " / ".join(names)
        + " | seconds per seed: "
        + " / ".join(names)
        + " |",
        "|---|---|---|---|",
    ]
    for dataset, result in results["datasets"].items():
        models = result["models"]
        sizes = " / ".join(f"{models[a]['parameters']:,}" for a in ARCHITECTURES)
        seconds = " / ".join(f"{models[a]['seconds_per_seed']:.0f}" for a in ARCHITECTURES)
        examples = " / ".join(f"{n:,}" for n in result["examples"].values())
        lines.append(f"| {dataset} | {examples} | {sizes} | {seconds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="also rewrite the README table")
    parser.add_argument("--smoke", action="store_true", help="smoke variants (seconds)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = {"seeds": list(SEEDS), "split": "test (global time cut)", "datasets": {}}
    for dataset in args.datasets.split(","):
        print(dataset)
        results["datasets"][dataset] = run_dataset(dataset, args.smoke)
    results["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    print(table)
    if args.readme:
        replace_table("ranking", table)


if __name__ == "__main__":
    main()
