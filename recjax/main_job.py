"""The main job: load → examples → train → evaluate against baselines → ScaNN → results.json."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from recjax.config import ExperimentConfig, from_json, to_json
from recjax.data.examples import RetrievalData
from recjax.data.sources import load_events
from recjax.data.splits import Role
from recjax.embeddings import item_vectors, user_vectors
from recjax.evaluation.retrieval_suite import evaluate_retrieval, limited_eval_set
from recjax.models.sequence import SequenceEncoderConfig
from recjax.retrieval.benchmark import benchmark_retrieval
from recjax.sharding.mesh import MeshConfig
from recjax.training.trainer import TrainedModel, Validator, restore_trained, train

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
REPORTED = ("recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr")


def load_data(config: ExperimentConfig, say: Callable[[str], None] = print) -> RetrievalData:
    """Reads the configured events, prints the load report and dataset statistics."""
    start = time.perf_counter()
    loaded = load_events(config.data)
    for line in loaded.report.lines():
        say(line)
    data = RetrievalData.build(loaded.events, config.examples)
    stats = data.statistics()
    say(
        f"dataset {config.name}: "
        + ", ".join(
            f"{key}={value:,.4g}" if isinstance(value, float) else f"{key}={value:,}"
            for key, value in stats.items()
        )
        + f" ({time.perf_counter() - start:.1f}s)"
    )
    return data


def train_and_evaluate(
    config: ExperimentConfig,
    workdir: str | Path,
    *,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict:
    """Runs (or resumes) the whole job in `workdir` and returns what it writes to results.json.

    In a multi-process job every process calls this and trains; process 0 alone prints,
    writes files and evaluates (the others return {}).
    """
    workdir = Path(workdir)
    main = jax.process_index() == 0
    if not main:
        progress, say = False, lambda _: None
    data = load_data(config, say)  # bad data fails here, before the workdir is touched
    workdir.mkdir(parents=True, exist_ok=True)
    with _exclusive(workdir) if main else contextlib.nullcontext():
        if main:
            _save_config(config, workdir)
        start = time.perf_counter()
        # Validation scores on one host; a multi-process job trains to the end instead.
        validate = make_validator(config, data) if jax.process_count() == 1 else None
        trained = train(config, data, workdir, progress=progress, validate=validate)
        say(
            f"training: {trained.how} → step {int(trained.state.step)} "
            f"({time.perf_counter() - start:.1f}s)"
        )
        if jax.process_count() > 1:
            trained = _gathered(trained)
        if not main:
            return {}
        results = evaluate(config, data, trained, progress=progress, say=say)
        results["train_seconds"] = time.perf_counter() - start
        (workdir / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    say(f"wrote {workdir / RESULTS_FILE}")
    return results


def model_name(config: ExperimentConfig) -> str:
    """The model's row name in metric tables: "two_tower", "sasrec", "hstu"..."""
    if isinstance(config.model, SequenceEncoderConfig):
        return config.model.architecture
    return "two_tower"


def make_validator(config: ExperimentConfig, data: RetrievalData) -> Validator:
    """Scores a model's `config.eval.selection_metric` on the validation queries (the
    model alone: no baselines), for model selection during training."""
    queries = limited_eval_set(data, Role.VALID, config.eval)
    features = data.query_features(queries.positions, events=True)

    def validate(model, params) -> float:
        metrics = evaluate_retrieval(
            data,
            queries,
            user_vectors(model, params, features),
            item_vectors(model, params, data),
            config.eval,
            model_name="model",
            baselines=False,
        )
        return metrics["model"][config.eval.selection_metric]

    return validate


def _gathered(trained: TrainedModel) -> TrainedModel:
    """`trained` with whole params on this process's first device, gathered from all processes
    (a collective: every process calls it), so that one process can evaluate alone."""
    params = multihost_utils.process_allgather(trained.state.params, tiled=True)
    params = jax.device_put(params, jax.local_devices()[0])
    return dataclasses.replace(trained, state=trained.state.replace(params=params))


@contextlib.contextmanager
def _exclusive(workdir: Path) -> Iterator[None]:
    """Holds the workdir's lock: two runs writing one workdir would corrupt it."""
    with (workdir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BlockingIOError(f"{workdir} is in use by another recjax process") from None
        yield


def evaluate_workdir(
    workdir: str | Path,
    *,
    mesh: MeshConfig | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict:
    """Re-evaluates the latest checkpoint of a run (its config is read from the workdir),
    restored onto `mesh` (default: the run's)."""
    config = load_config(workdir)
    if mesh is not None:
        config = dataclasses.replace(config, mesh=mesh)
    data = load_data(config, say)
    results = evaluate(
        config, data, restore_trained(config, data, workdir), progress=progress, say=say
    )
    (Path(workdir) / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return results


def evaluate(
    config: ExperimentConfig,
    data: RetrievalData,
    trained: TrainedModel,
    *,
    progress: bool,
    say: Callable[[str], None],
) -> dict:
    """Test metrics for the model and baselines (validation too), plus ScaNN vs exact."""
    params = trained.state.params
    items_nd = item_vectors(trained.model, params, data)
    metrics = {}
    for role in (Role.VALID, Role.TEST):
        queries = limited_eval_set(data, role, config.eval)
        features = data.query_features(queries.positions, events=True)
        users_qd = user_vectors(trained.model, params, features)
        metrics[role.name.lower()] = evaluate_retrieval(
            data,
            queries,
            users_qd,
            items_nd,
            config.eval,
            model_name=model_name(config),
            progress=progress,
            label=f"{role.name.lower()} ",
        )
    say(
        format_table(
            metrics["test"],
            title=f"test metrics ({len(queries.positions):,} users, "
            f"exclude_seen={config.eval.exclude_seen})",
        )
    )
    known = slice(data.items.first_known, None)
    retrieval, index = benchmark_retrieval(items_nd[known], users_qd, config.scann)
    say(
        "retrieval: "
        + ", ".join(
            f"{key}={value:.4g}" for key, value in retrieval.items() if isinstance(value, float)
        )
    )
    shown = slice(0, config.eval.show_examples)
    found, _ = index.search(users_qd[shown], 5)
    for line in example_lines(
        data, queries.positions[shown], queries.targets[shown], found + data.items.first_known
    ):
        say(line)
    return {
        "dataset": config.name,
        "statistics": data.statistics(),
        "metrics": metrics["test"],
        "validation_metrics": metrics["valid"],
        "retrieval": retrieval,
        "steps": int(trained.state.step),
    }


def example_lines(
    data: RetrievalData, positions: np.ndarray, targets: np.ndarray, recommended: np.ndarray
) -> list[str]:
    """Readable recommendations at each test query: the user's last items, then the list."""
    lines = ["example recommendations at the test query (* = the held-out next item):"]
    for position, target_t, items_k in zip(positions, targets, recommended, strict=True):
        row = data.timelines.row_of(np.array([position]))[0]
        user = data.users.raw(data.timelines.users[row : row + 1])[0]
        recent = data.timelines.history(np.array([position]), 3)[0]
        lines.append(
            f"user {user}: recently "
            + "; ".join(str(data.item_text[i]) for i in recent if i)
            + " → recommended:"
        )
        lines += [
            f"  {'*' if item in target_t else ' '} {data.item_text[item]}" for item in items_k
        ]
    return lines


def format_table(metrics: dict[str, dict[str, float]], *, title: str) -> str:
    """A fixed-width table of the REPORTED metrics, one row per model."""
    header = f"{'model':<14}" + "".join(f"{name:>11}" for name in REPORTED)
    rows = [
        f"{model:<14}" + "".join(f"{values[name]:>11.4f}" for name in REPORTED)
        for model, values in metrics.items()
    ]
    return "\n".join([title, header, *rows])


def load_config(workdir: str | Path) -> ExperimentConfig:
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} a recjax workdir?")
    return from_json(path.read_text())


def _save_config(config: ExperimentConfig, workdir: Path) -> None:
    """Writes the config; a resumed run must use the config it started with (but may run
    on another mesh: checkpoints restore onto any)."""
    path = workdir / CONFIG_FILE
    if path.is_file():
        saved = dataclasses.replace(from_json(path.read_text()), mesh=config.mesh)
        differences = config_differences(saved, config)
        if differences:
            raise ValueError(
                f"{workdir} holds a run with a different config ({'; '.join(differences[:3])}); "
                "use another --workdir, or delete that one to start over."
            )
        return
    path.write_text(to_json(config))


def config_differences(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """'field: old → new' for every leaf field that differs."""

    def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            return {
                k: v
                for key, item in value.items()
                for k, v in leaves(item, f"{prefix}{key}.").items()
            }
        return {prefix.rstrip("."): value}

    before, after = leaves(dataclasses.asdict(old)), leaves(dataclasses.asdict(new))
    return [
        f"{key}: {before.get(key)!r} → {after.get(key)!r}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
