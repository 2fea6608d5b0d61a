"""The ranker job: trains the multi-task ranker beside a retrieval run, for its funnel.

    recjax train-ranker --workdir runs/online_retail

reads the run's config, builds ranking examples from the run's dataset with the run's
validation and test events held out (from each user's first held-out event on: the
ranker learns from what the two-tower learned from, so the funnel can be evaluated on
the run's test users), trains an MMoE into `WORKDIR/ranker/`, and exports it for serving
into `WORKDIR/ranker/export/` with features as of the end of the whole log (a request
is served after all of a user's events). `recjax export` puts it in the run's bundle.

The ranker learns from the candidates the funnel shows it: each purchase is paired with
items the run's two-tower ranked highly for that user at that moment but that were not
bought (`recjax.data.retrieval_negatives`; the query is the two-tower's, with the
history before the purchase), and every example carries the retrieval score and rank,
which the funnel passes at serving time.
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
    NegativeSampler,
    RankingDataConfig,
    build_ranking_data,
    load_ranking_logs,
)
from recjax.data.ranking_examples import Candidates
from recjax.data.ranking_serving import ServingFeatures
from recjax.data.retrieval_negatives import RetrievalNegativesConfig, with_retrieval_negatives
from recjax.data.splits import Role
from recjax.embeddings import item_vectors, user_vectors
from recjax.export.ranker import EXPORT_DIR, RANKER_DIR, export_ranker
from recjax.main_job import load_config, load_data
from recjax.training.ranking_trainer import (
    RankingExperimentConfig,
    RankingTrainConfig,
    evaluate_ranking,
    train_ranking,
)
from recjax.training.trainer import TrainedModel, restore_trained

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


def timeline_positions(data: RetrievalData, candidates: Candidates) -> np.ndarray:
    """[n] the flat timeline position of each candidate's (user, item, time) event in
    `data` (the first if repeated), -1 where `data` has no such event."""
    timelines = data.timelines
    users = np.concatenate(
        [timelines.users[timelines.timeline_of_position()], data.users.lookup(candidates.user)]
    ).astype(np.int64)
    items = np.concatenate([timelines.items, data.items.lookup(candidates.item)]).astype(np.int64)
    _, times = np.unique(
        np.concatenate([timelines.timestamps, candidates.timestamp]), return_inverse=True
    )
    sizes = (int(users.max(initial=0)) + 1, int(times.max(initial=0)) + 1, len(data.items))
    if sizes[0] * sizes[1] * sizes[2] >= np.iinfo(np.int64).max:
        raise ValueError("(user, time, item) keys overflow int64")
    keys = (users * sizes[1] + times.reshape(-1)) * sizes[2] + items
    events, queries = keys[: timelines.num_events], keys[timelines.num_events :]
    order = np.argsort(events, kind="stable")
    at = np.minimum(np.searchsorted(events[order], queries), max(len(order) - 1, 0))
    found = (len(order) > 0) & (events[order][at] == queries)
    return np.where(found, order[at], -1)


def retrieval_negatives(
    data: RetrievalData,
    trained: TrainedModel,
    config: RetrievalNegativesConfig,
) -> NegativeSampler:
    """Negatives from the run's funnel: each positive's query is the two-tower's user
    vector for the history just before that event (as in the run's own training and
    evaluation queries), scored against the run's catalogue."""
    params = trained.state.params
    items_nd = item_vectors(trained.model, params, data)[data.items.first_known :]

    def negatives(positives, engaged, catalogue, always_known):
        positions = timeline_positions(data, positives)
        found = positions >= 0
        positives = positives.take(found)
        queries = user_vectors(
            trained.model, params, data.query_features(positions[found], events=True)
        )
        examples = with_retrieval_negatives(
            positives,
            queries,
            items_nd,
            data.items.ids,
            config=config,
            always_known=always_known,
        )
        return examples

    return negatives


def train_run_ranker(
    workdir: str | Path,
    *,
    max_steps: int | None = None,
    negatives: RetrievalNegativesConfig | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Path:
    """Trains (or resumes) the run's ranker and exports it; returns the export directory.
    `negatives`: how many of which (default `RetrievalNegativesConfig()`)."""
    negatives = negatives or RetrievalNegativesConfig()
    workdir = Path(workdir).absolute()
    run = load_config(workdir)
    config = ranker_config(run, max_steps=max_steps)
    quiet = lambda _: None  # noqa: E731
    run_data = load_data(run, quiet)
    trained_run = restore_trained(run, run_data, workdir)
    logs = load_ranking_logs(
        config.data,
        quiet,
        keep=before_held_out(run_data),
        negatives=retrieval_negatives(run_data, trained_run, negatives),
    )
    data = build_ranking_data(config.data, logs)
    # Negatives know only some labels (purchase, engaged); positives know them all.
    positives = int(np.all(list(logs.candidates.masks.values()), axis=0).sum())
    say(
        f"ranker examples: {len(data.examples):,}, {positives:,} purchases inside the "
        f"two-tower's top {negatives.window} with {negatives.hard_per_positive} negatives "
        f"from there and {negatives.random_per_positive} from the catalogue each (the run's "
        "validation and test events held out)"
    )
    directory = workdir / RANKER_DIR
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(to_json(config))
    trained = train_ranking(config, data, directory, progress=progress)
    params = trained.state.params
    metrics = evaluate_ranking(trained.model, params, data.examples.of_role(Role.TEST))
    about = {
        "test": metrics,
        "negatives": dataclasses.asdict(negatives),
        "examples": len(data.examples),
        "purchases": positives,
    }
    (directory / "results.json").write_text(json.dumps(about, indent=2))
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
