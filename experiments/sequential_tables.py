"""Trains every sequence model on every dataset and writes the sequential results table.

    python experiments/sequential_tables.py                      # Beauty x3 seeds, Yelp, LastFM
    python experiments/sequential_tables.py --ml1m PATH/TO/ml-1m # also MovieLens-1M
    python experiments/sequential_tables.py --datasets lastfm --seeds 1   # a quick subset
    python experiments/sequential_tables.py --models sasrec_attributes     # item attributes

Models (and seeds) already in experiments/results/sequential.json are kept, so an
interrupted run resumes at the next seed; --rerun trains everything again.

Protocol (as in SASRec / S3-Rec / HSTU): leave-one-out, the last item is the test target
and the one before it the validation target; every item in the catalogue is ranked, the
user's earlier items removed; the step with the best validation NDCG@10 is evaluated on
test. Writes experiments/results/sequential.json
(`{dataset: {model: {"recall@10": mean, "recall@10_std": std, ...}}}`) and the README table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

EXPERIMENTS = Path(__file__).resolve().parent
sys.path.insert(0, str(EXPERIMENTS))

from readme_tables import replace_table  # noqa: E402
from sequential import DATASETS, get_config  # noqa: E402

from recjax.config import ExperimentConfig  # noqa: E402
from recjax.data.sources import DataConfig  # noqa: E402
from recjax.main_job import load_data, train_and_evaluate  # noqa: E402
from recjax.models.sequence import ARCHITECTURES  # noqa: E402
from recjax.training.trainer import build_model, make_batches  # noqa: E402

RESULTS = EXPERIMENTS / "results" / "sequential.json"
METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")
# Full-ranking numbers published for this protocol (recall@K = HR@K with one target).
PUBLISHED = {
    "beauty": [
        ("SASRec (paper-reported, via TIGER)", 0.0605, 0.0318),
        ("TIGER (NeurIPS 2023)", 0.0648, 0.0384),
        ("HSTU (independent re-run, cross-entropy)", 0.0708, 0.0412),
        ("RecBole SASRec, this file, this CPU (37 min)", 0.0810, 0.0403),
    ],
    "ml1m": [
        ("SASRec (HSTU paper)", 0.2853, 0.1603),
        ("HSTU-large (HSTU paper)", 0.3294, 0.1893),
    ],
}


def run_one(config, workdir: Path) -> dict[str, float]:
    """Trains and evaluates one config; the test metrics plus time and throughput."""
    results = train_and_evaluate(config, workdir, progress=False, say=lambda _: None)
    data = load_data(config, say=lambda _: None)
    batches = make_batches(config, data, build_model(config, data))
    epochs = results["steps"] / batches.steps_per_epoch
    test = results["metrics"][config.model.architecture]
    return {
        **{name: test[name] for name in METRICS},
        "valid_ndcg@10": results["validation_metrics"][config.model.architecture]["ndcg@10"],
        "train_seconds": results["train_seconds"],
        "epochs": epochs,
        "sequences_per_second": batches.num_sequences * epochs / results["train_seconds"],
        "scann_recall@10_vs_exact": results["retrieval"]["scann_recall@10_vs_exact"],
    }


def _seeded(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    """`config` with `seed` for initialisation, dropout and batch order."""
    batch = dataclasses.replace(config.train.batch, seed=seed)
    return dataclasses.replace(
        config, seed=seed, train=dataclasses.replace(config.train, batch=batch)
    )


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the seeds' runs, plus `<metric>_std` (sample std over
    seeds; 0 for one seed)."""
    summary: dict[str, float] = {"seeds": len(runs)}
    for name in (name for name in runs[0] if name != "seed"):
        values = [run[name] for run in runs]
        summary[name] = statistics.fmean(values)
        summary[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def readme_table(results: dict) -> str:
    lines = [
        "| dataset | model | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | seeds | train time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, models in results.items():
        for model, row in models.items():
            cells = [
                f"{row[m]:.4f} ± {row[m + '_std']:.4f}" if row["seeds"] > 1 else f"{row[m]:.4f}"
                for m in ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
            ]
            lines.append(
                f"| {dataset} | recjax {model.replace('_attributes', ' + item attributes')} | "
                + " | ".join(cells)
                + f" | {row['seeds']} | {row['train_seconds'] / 60:.1f} min |"
            )
        for name, recall10, ndcg10 in PUBLISHED.get(dataset, []):
            lines.append(f"| {dataset} | {name} | | {recall10:.4f} | | | {ndcg10:.4f} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["beauty", "yelp", "lastfm"])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[*ARCHITECTURES, "sasrec_attributes"],
        help="architectures, `_attributes` for item attributes (S3-Rec files only)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds on Beauty (1 elsewhere)")
    parser.add_argument("--ml1m", help="MovieLens-1M folder (with ratings.dat) or tfds:1m-ratings")
    parser.add_argument("--readme", action="store_true", help="also rewrite the README table")
    parser.add_argument(
        "--rerun", action="store_true", help="train again what sequential.json already holds"
    )
    args = parser.parse_args()
    datasets = list(args.datasets) + (["ml1m"] if args.ml1m else [])
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for dataset in datasets:
        if dataset not in DATASETS:
            parser.error(f"unknown dataset {dataset!r}")
        wanted = args.seeds if dataset == "beauty" else 1
        for model in args.models:
            if model.endswith("_attributes") and dataset == "ml1m":
                print(f"ml1m {model}: skipped, MovieLens-1M has no item-attribute file")
                continue
            entry = {} if args.rerun else results.get(dataset, {}).get(model, {})
            if entry.get("seeds", 0) >= wanted:
                print(f"{dataset} {model}: {entry['seeds']} seed(s) in {RESULTS.name}, kept")
                continue
            config = get_config(f"{dataset}_{model}")
            if dataset == "ml1m":
                config = dataclasses.replace(config, data=_ml1m_data(args.ml1m))
            runs = list(entry.get("runs", []))
            for seed in sorted(set(range(wanted)) - {run["seed"] for run in runs}):
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as workdir:
                    runs.append({"seed": seed, **run_one(_seeded(config, seed), Path(workdir))})
                print(
                    f"{dataset} {model} seed {seed}: "
                    f"R@10 {runs[-1]['recall@10']:.4f} N@10 {runs[-1]['ndcg@10']:.4f} "
                    f"({time.perf_counter() - start:.0f}s, {runs[-1]['epochs']:.1f} epochs)",
                    flush=True,
                )
                jax.clear_caches()
                # Saved after every seed: an interrupted run resumes at the next seed.
                results.setdefault(dataset, {})[model] = {**summarise(runs), "runs": runs}
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(readme_table(results))
    if args.readme:
        replace_table("sequential", readme_table(results))


def _ml1m_data(path: str) -> DataConfig:
    if path.startswith("tfds:"):
        return DataConfig(format="tfds_movielens", path=path.removeprefix("tfds:"))
    return DataConfig(format="movielens_1m", path=path)


if __name__ == "__main__":
    main()
