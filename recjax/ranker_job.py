"""The ranker job: trains the multi-task ranker beside a retrieval run, for its funnel.

    recjax train-ranker --workdir runs/online_retail

reads the run's config, builds ranking examples from the run's dataset with the run's
validation and test events held out (from each user's first held-out event on: the
ranker learns from what the two-tower learned from, so the funnel can be evaluated on
the run's test users), trains an MMoE into `WORKDIR/ranker/`, and exports it for serving
into `WORKDIR/ranker/export/` with features as of the end of the whole log (a request
is served after all of a user's events). `recjax export` adds it to the run's bundle.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recjax.config import ExperimentConfig, to_json
from recjax.data.event_log import EventLog
from recjax.data.examples import RetrievalData
from recjax.data.ranking_datasets import (
    ITEM_FIELDS,
    RankingDataConfig,
    build_ranking_data,
    load_ranking_logs,
)
from recjax.data.ranking_serving import ServingFeatures
from recjax.data.splits import Role
from recjax.export.bundle import add_directory
from recjax.export.ranker import export_ranker
from recjax.main_job import load_config, load_data
from recjax.training.ranking_trainer import (
    RankingExperimentConfig,
    RankingTrainConfig,
    evaluate_ranking,
    train_ranking,
)

RANKER_DIR = "ranker"  # Under the run's workdir: checkpoints, config.json, results.json.
EXPORT_DIR = "export"  # Under RANKER_DIR: the serving files (`recjax.export.ranker`).
# Datasets with both a retrieval reader and ranking labels.
_DATASETS = ("online_retail", "movielens_100k")


def ranker_config(
    run: ExperimentConfig, *, max_steps: int | None = None
) -> RankingExperimentConfig:
    """The MMoE of `experiments/ranking.py` on the run's dataset (the 100,000 most recent
    purchases or ratings), stopped at `max_steps` if given."""
    if run.data.format not in _DATASETS:
        raise ValueError(
            f"no ranking labels for {run.data.format!r} runs (supported: {', '.join(_DATASETS)})"
        )
    return RankingExperimentConfig(
        name=f"{run.name}_ranker",
        data=RankingDataConfig(
            dataset=run.data.format,
            path=run.data.path,
            on_error=run.data.on_error,
            max_positives=100_000,
        ),
        train=RankingTrainConfig(max_steps=max_steps),
    )


def before_held_out(data: RetrievalData) -> Callable[[EventLog], np.ndarray]:
    """keep(events) -> [n] bool: events earlier than their user's first validation or test
    event of the run (users the run does not know keep everything)."""
    timelines = data.timelines
    held = data.roles != Role.TRAIN
    row = timelines.timeline_of_position()
    cut = np.full(len(data.users), np.iinfo(np.int64).max)
    np.minimum.at(cut, timelines.users[row[held]], timelines.timestamps[held])

    def keep(events: EventLog) -> np.ndarray:
        return events.timestamp < cut[data.users.lookup(events.user)]

    return keep


def train_run_ranker(
    workdir: str | Path,
    *,
    max_steps: int | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Path:
    """Trains (or resumes) the run's ranker and exports it; returns the export directory."""
    workdir = Path(workdir).absolute()
    run = load_config(workdir)
    config = ranker_config(run, max_steps=max_steps)
    quiet = lambda _: None  # noqa: E731
    logs = load_ranking_logs(config.data, quiet, keep=before_held_out(load_data(run, quiet)))
    data = build_ranking_data(config.data, logs)
    say(f"ranker examples: {len(data.examples):,} (run's validation and test events held out)")
    directory = workdir / RANKER_DIR
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(to_json(config))
    trained = train_ranking(config, data, directory, progress=progress)
    params = trained.state.params
    metrics = evaluate_ranking(trained.model, params, data.examples.of_role(Role.TEST))
    (directory / "results.json").write_text(json.dumps({"test": metrics}, indent=2))
    say("ranker test: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "auc" in k))
    # Serving happens after every event: features from the whole log, nothing held out.
    everything = load_ranking_logs(dataclasses.replace(config.data, max_positives=None), quiet)
    features = ServingFeatures.build(
        data.encoder,
        everything.candidates,
        everything.engaged,
        ITEM_FIELDS.get(config.data.dataset, ()),
    )
    out = export_ranker(
        trained.model,
        params,
        data.encoder,
        features,
        directory / EXPORT_DIR,
        model_version=f"{config.name}@{int(trained.state.step)}",
    )
    say(f"exported the ranker to {out}")
    return out


def add_run_ranker(workdir: str | Path, bundle: str | Path) -> bool:
    """Adds the run's exported ranker (if it has one) to its `bundle`; whether it did."""
    ranker = Path(workdir) / RANKER_DIR / EXPORT_DIR
    if not (ranker / "ranker.json").is_file():
        return False
    add_directory(bundle, RANKER_DIR, ranker)
    return True
