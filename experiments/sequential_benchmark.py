"""Sequence-model speed on Amazon Beauty: training throughput, time to a validation target,
evaluation throughput — next to RecBole's SASRec measured on this machine.

    python experiments/sequential_benchmark.py [--models sasrec hstu bag_of_events]

For each model: wall time from the start of training (compilation and every validation
included) until validation NDCG@10 first reaches 0.030, validating once per epoch on all
22,363 users as RecBole does; training throughput in (prefix) sequences per second, i.e.
training targets per second, RecBole's unit; full-ranking evaluation throughput in users
per second. Writes experiments/results/sequential_benchmark.json and, with --readme, the
README table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import jax

EXPERIMENTS = Path(__file__).resolve().parent
sys.path.insert(0, str(EXPERIMENTS))

from readme_tables import replace_table  # noqa: E402
from sequential import get_config  # noqa: E402

from recjax.main_job import load_data, make_validator  # noqa: E402
from recjax.models.sequence import ARCHITECTURES  # noqa: E402
from recjax.training.trainer import build_model, make_batches, train  # noqa: E402

RESULTS = EXPERIMENTS / "results" / "sequential_benchmark.json"
TARGET = 0.030  # validation NDCG@10
BUDGET_EPOCHS = 12.0  # give up after this many epochs
# RecBole SASRec (PyTorch, CE, hidden 64, 2 layers, max length 50) on this 2-core machine.
RECBOLE = {"prefix_sequences_per_second": 830.0, "seconds_to_target": (450.0, 540.0)}


class _Reached(Exception):
    """Raised by the validator to end training once the target is met."""


def benchmark(model: str) -> dict[str, float | None]:
    config = get_config(f"beauty_{model}")
    data = load_data(config, say=lambda _: None)
    batches = make_batches(config, data, build_model(config, data))
    validator = make_validator(config, data)
    start = time.perf_counter()
    history: list[tuple[float, float, float]] = []  # (seconds, seconds validating, ndcg)

    def validate(model_, params) -> float:
        began = time.perf_counter()
        ndcg = validator(model_, params)
        history.append((time.perf_counter() - start, time.perf_counter() - began, ndcg))
        print(f"  {model}: {history[-1][0]:.0f}s valid ndcg@10={ndcg:.4f}", flush=True)
        if ndcg >= TARGET:
            raise _Reached
        return ndcg

    config = dataclasses.replace(
        config,
        train=dataclasses.replace(
            config.train, num_epochs=BUDGET_EPOCHS, early_stopping_patience=0
        ),
    )
    with tempfile.TemporaryDirectory() as workdir, contextlib.suppress(_Reached):
        train(config, data, workdir, progress=False, validate=validate)
    total = time.perf_counter() - start
    validating = sum(seconds for _, seconds, _ in history)
    epochs = len(history) * config.train.validate_every_epochs
    users = 22363
    return {
        "seconds_to_valid_ndcg@10_0.030": total if history[-1][2] >= TARGET else None,
        "epochs_to_target": epochs if history[-1][2] >= TARGET else None,
        "best_valid_ndcg@10": max(ndcg for _, _, ndcg in history),
        "train_sequences_per_second": batches.num_targets * epochs / (total - validating),
        "seconds_per_epoch": (total - validating) / epochs,
        "eval_users_per_second": users / (validating / len(history)),
    }


def readme_table(results: dict) -> str:
    low, high = RECBOLE["seconds_to_target"]
    lines = [
        "| model | time to valid N@10 0.030 | RecBole's time / ours | epochs | "
        "train (prefix) sequences/s | s/epoch | eval users/s |",
        "|---|---|---|---|---|---|---|",
        f"| RecBole SASRec (PyTorch, same machine) | {low:.0f}–{high:.0f} s | 1 | ~3 | "
        f"{RECBOLE['prefix_sequences_per_second']:.0f} | 158 | |",
    ]
    for model, row in results["models"].items():
        seconds = row["seconds_to_valid_ndcg@10_0.030"]
        reached = f"{seconds:.0f} s" if seconds is not None else "not reached"
        speedup = f"{low / seconds:.1f}–{high / seconds:.1f}×" if seconds is not None else "-"
        epochs = row["epochs_to_target"]
        lines.append(
            f"| recjax {model} | {reached} | {speedup} | "
            f"{epochs if epochs is not None else '-'} | "
            f"{row['train_sequences_per_second']:,.0f} | {row['seconds_per_epoch']:.0f} | "
            f"{row['eval_users_per_second']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--readme", action="store_true", help="also rewrite the README table")
    args = parser.parse_args()
    results = {"machine": f"{jax.devices()[0].platform}", "models": {}}
    for model in args.models:
        results["models"][model] = benchmark(model)
        jax.clear_caches()
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(readme_table(results))
    if args.readme:
        replace_table("sequential_benchmark", readme_table(results))


if __name__ == "__main__":
    main()
