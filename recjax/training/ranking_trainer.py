"""Training and evaluating a multi-task ranker: data → model → sharded state → steps.

Reuses the two-tower's pieces: `TrainState`, `make_optimizer` (tables and dense layers
apart), the mesh and its shardings, and `Checkpointer` (when a work directory is given).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.sharding import NamedSharding

from recjax.data.ranking_datasets import RankingDataConfig
from recjax.data.ranking_examples import RankingData, RankingExamples
from recjax.data.splits import Role
from recjax.evaluation.ranking_metrics import task_metrics
from recjax.losses.multitask import TaskSpec, multitask_loss
from recjax.models.ranking import RankingModel, RankingModelConfig
from recjax.sharding.mesh import MeshConfig, batch_sharding, make_mesh, param_shardings, replicated
from recjax.training.checkpoint import CheckpointConfig, Checkpointer, restore_or_initialize
from recjax.training.optimizer import make_optimizer
from recjax.training.train_state import TrainState


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingTrainConfig:
    """How long and how to train a ranker."""

    batch_size: int = 512  # Examples per step (a multiple of the mesh's data axis).
    num_epochs: float = 2.0  # Passes over the training examples.
    max_steps: int | None = None  # Stop early at this step (None: run all epochs).
    learning_rate: float = 2e-3  # AdamW step size for dense layers.
    table_learning_rate: float = 5e-3  # Adam step size for embedding tables.
    weight_decay: float = 1e-5  # Decoupled weight decay on dense layers.
    warmup_steps: int = 50  # Linear warm-up of both learning rates.
    log_every_steps: int = 50  # Record the training losses every this many steps.
    eval_batch_size: int = 4096  # Examples per prediction call.


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingExperimentConfig:
    """One ranking experiment: data, model, per-task loss weights and training."""

    name: str  # Experiment name, for reports.
    data: RankingDataConfig  # Which dataset and how its examples are built.
    model: RankingModelConfig = RankingModelConfig()  # Architecture and sizes.
    train: RankingTrainConfig = RankingTrainConfig()  # Steps and optimizer.
    # Loss weight per task name; tasks not listed weigh 1.0.
    task_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    mesh: MeshConfig = MeshConfig()  # Device mesh (batches split over `data`).
    checkpoint: CheckpointConfig = CheckpointConfig()  # Used only when a workdir is given.
    seed: int = 0  # Parameter init and batch order.


@dataclasses.dataclass(frozen=True)
class TrainedRanker:
    model: RankingModel
    state: TrainState
    losses: list[dict[str, float]]  # Logged training losses: {"step", "train/loss", ...}.


def weighted_tasks(tasks: tuple[TaskSpec, ...], weights: Mapping[str, float]):
    """`tasks` with the configured loss weights; unknown names are an error."""
    unknown = set(weights) - {task.name for task in tasks}
    if unknown:
        raise ValueError(f"task_weights name unknown tasks {sorted(unknown)}.")
    return tuple(
        dataclasses.replace(task, weight=weights.get(task.name, task.weight)) for task in tasks
    )


def build_model(config: RankingExperimentConfig, data: RankingData) -> RankingModel:
    return RankingModel(
        features=data.encoder.features,
        config=config.model,
        tasks=weighted_tasks(data.tasks, config.task_weights),
    )


def make_train_step(model: RankingModel):
    """`train_step(state, batch) -> (state, metrics)`: one pure update on the weighted
    multi-task loss. `batch` holds the model inputs plus `label/<task>`, `mask/<task>`."""

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        def loss_fn(params):
            outputs = model.apply({"params": params}, batch)
            labels = {t.name: batch[f"label/{t.name}"] for t in model.tasks}
            masks = {t.name: batch[f"mask/{t.name}"] for t in model.tasks}
            return multitask_loss(model.tasks, outputs, labels, masks)

        (loss, per_task), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm(grads)}
        metrics |= {f"train/{name}": value for name, value in per_task.items()}
        return state.apply_gradients(grads), metrics

    return train_step


def training_batch(
    examples: RankingExamples, step: int, batch_size: int, seed: int
) -> dict[str, np.ndarray]:
    """Batch `step` of a fresh permutation per epoch (a deterministic function of the step,
    so a resumed run sees the same batches). The last partial batch of an epoch is dropped."""
    steps_per_epoch = max(len(examples) // batch_size, 1)
    epoch, index = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(len(examples))
    rows = order[index * batch_size : (index + 1) * batch_size]
    batch = {name: column[rows] for name, column in examples.inputs.items()}
    batch |= {f"label/{name}": column[rows] for name, column in examples.labels.items()}
    batch |= {f"mask/{name}": column[rows] for name, column in examples.masks.items()}
    return batch


class _Program(NamedTuple):
    """The jitted init and step of one (model, training config): built once per process,
    so runs that differ only in seed or data order reuse the compiled code."""

    init: Callable[[jax.Array, dict[str, np.ndarray]], TrainState]
    step: Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
    state_shardings: TrainState
    batch_sharding: NamedSharding


@functools.lru_cache(maxsize=16)
def _program(
    model: RankingModel, config: RankingTrainConfig, scheduled_steps: int, mesh_config: MeshConfig
) -> _Program:
    mesh = make_mesh(mesh_config)
    tx = make_optimizer(
        learning_rate=config.learning_rate,
        table_learning_rate=config.table_learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        total_steps=scheduled_steps,
    )

    def init(rng: jax.Array, sample: dict[str, np.ndarray]) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        # Unboxed: the tables' logical axes are not needed (param_shardings shards by path).
        params = nn.meta.unbox(model.init(init_rng, sample)["params"])
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx, rng=state_rng)

    sample = {  # Shapes only: the init reads no values but the batch size.
        name: jax.ShapeDtypeStruct((config.batch_size, *shape), dtype)
        for name, (shape, dtype) in _input_shapes(model).items()
    }
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0), sample)
    state_shardings = param_shardings(mesh, abstract)
    batch = batch_sharding(mesh)
    step = jax.jit(
        make_train_step(model),
        in_shardings=(state_shardings, batch),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=0,
    )
    return _Program(
        init=jax.jit(init, out_shardings=state_shardings),
        step=step,
        state_shardings=state_shardings,
        batch_sharding=batch,
    )


def _input_shapes(model: RankingModel) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-example shape and dtype of every batch entry the model's train step reads."""
    f = model.features
    shapes = {
        "user": ((), np.int32),
        "item": ((), np.int32),
        "categorical": ((f.num_categorical,), np.int32),
        "numeric": ((f.num_numeric,), np.float32),
        "session": ((f.session_length,), np.int32),
        "position": ((), np.int32),
    }
    for task in model.tasks:
        shapes[f"label/{task.name}"] = ((), np.float32)
        shapes[f"mask/{task.name}"] = ((), np.bool_)
    return shapes


def train_ranking(
    config: RankingExperimentConfig,
    data: RankingData,
    workdir: str | Path | None = None,
    *,
    progress: bool = True,
) -> TrainedRanker:
    """Trains a ranker on the TRAIN examples of `data` (resuming from `workdir` if given)."""
    train = data.examples.of_role(Role.TRAIN)
    batch_size = config.train.batch_size
    if len(train) < batch_size:
        raise ValueError(f"{len(train)} training examples are fewer than one batch ({batch_size}).")
    steps_per_epoch = len(train) // batch_size
    scheduled = max(int(round(config.train.num_epochs * steps_per_epoch)), 1)
    steps = min(scheduled, config.train.max_steps or scheduled)

    model = build_model(config, data)
    sample = training_batch(train, 0, batch_size, config.seed)
    program = _program(model, config.train, scheduled, config.mesh)
    rng = jax.random.PRNGKey(config.seed)
    abstract = jax.eval_shape(program.init, rng, sample)
    abstract = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        abstract,
        program.state_shardings,
    )

    def init_fn() -> TrainState:
        return program.init(rng, sample)

    checkpointer = (
        Checkpointer(Path(workdir) / "checkpoints", config.checkpoint) if workdir else None
    )
    if checkpointer is None:
        state = init_fn()
    else:
        state, _, _ = restore_or_initialize(checkpointer, abstract, init_fn, config.checkpoint)
    losses: list[dict[str, float]] = []
    try:
        for step in tqdm.trange(
            int(state.step), steps, disable=not progress, desc=config.name, unit="step"
        ):
            batch = jax.device_put(
                training_batch(train, step, batch_size, config.seed), program.batch_sharding
            )
            state, metrics = program.step(state, batch)
            if (step + 1) % config.train.log_every_steps == 0 or step + 1 == steps:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                losses.append({"step": step + 1, **values})
            if checkpointer is not None:
                checkpointer.save(step + 1, state, {"step": step + 1})
        if checkpointer is not None:
            checkpointer.save(int(state.step), state, {"step": int(state.step)}, force=True)
    finally:
        if checkpointer is not None:
            checkpointer.close()
    return TrainedRanker(model=model, state=state, losses=losses)


def predict(
    model: RankingModel, params, inputs: Mapping[str, np.ndarray], batch_size: int = 4096
) -> dict[str, np.ndarray]:
    """task -> [n] raw outputs (logits / values) for encoded `inputs`, in fixed-size
    batches (the last one padded) so one compiled function serves every call."""
    n = len(inputs["item"])
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size).clip(max=n - 1)
        outputs = _apply(model, params, {name: jnp.asarray(x[rows]) for name, x in inputs.items()})
        chunks.append({name: np.asarray(x)[: n - start] for name, x in outputs.items()})
    return {task.name: np.concatenate([c[task.name] for c in chunks]) for task in model.tasks}


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: RankingModel, params, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return model.apply({"params": params}, batch)


def evaluate_ranking(
    model: RankingModel, params, examples: RankingExamples, batch_size: int = 4096
) -> dict[str, float]:
    """Per-task metrics (`recjax.evaluation.ranking_metrics.task_metrics`) on `examples`."""
    outputs = predict(model, params, examples.inputs, batch_size)
    return task_metrics(model.tasks, outputs, examples.labels, examples.masks)
