"""The two-tower training loop: mesh → abstract state → sharded init → restore → steps."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh, NamedSharding

from recjax.config import ExperimentConfig, TrainConfig
from recjax.data.examples import RetrievalData
from recjax.data.pipeline import TrainBatches
from recjax.models.two_tower import TwoTower
from recjax.sharding.mesh import batch_sharding, make_mesh, param_shardings, replicated
from recjax.training.checkpoint import Checkpointer, restore_or_initialize
from recjax.training.metrics_writer import MetricsWriter
from recjax.training.objective import two_tower_loss
from recjax.training.optimizer import make_optimizer
from recjax.training.sparse_step import init_sparse_state, make_sparse_train_step, sparse_tables
from recjax.training.train_state import TrainState

CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    model: TwoTower
    state: TrainState
    how: str  # "fresh", "warm-start" or "resumed@STEP": where training started from.


TABLE_ROW_MULTIPLE = 128  # Table rows are padded to this, so any model axis up to it divides.


def build_model(config: ExperimentConfig, data: RetrievalData) -> TwoTower:
    """The two-tower for `data`, its tables padded to a multiple of TABLE_ROW_MULTIPLE rows
    (the padding rows are never looked up) so they split over the `model` axis of any mesh
    and a table never has to fit on one device."""
    return TwoTower(
        config=config.model,
        num_users=padded_rows(len(data.users)),
        num_items=padded_rows(data.num_items),
        num_contexts=padded_rows(len(data.contexts)),
        num_text_buckets=padded_rows(data.config.text_buckets),
    )


def padded_rows(rows: int) -> int:
    return -(-max(rows, 1) // TABLE_ROW_MULTIPLE) * TABLE_ROW_MULTIPLE


def scheduled_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps the learning-rate schedule spans: `num_epochs` worth."""
    return max(int(round(config.num_epochs * steps_per_epoch)), 1)


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps to run: the schedule, cut at `max_steps` (which leaves the schedule as it is,
    so a run stopped early and resumed with a larger `max_steps` matches one that never
    stopped)."""
    steps = scheduled_steps(config, steps_per_epoch)
    return min(steps, config.max_steps) if config.max_steps is not None else steps


def make_train_step(model: TwoTower, config: TrainConfig):
    """`train_step(state, batch) -> (state, metrics)`: one pure update."""

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        loss, grads = jax.value_and_grad(
            lambda params: two_tower_loss(model, params, batch, rng, temperature=config.temperature)
        )(state.params)
        metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm(grads)}
        return state.apply_gradients(grads), metrics

    return train_step


def _train_step(model: TwoTower, config: TrainConfig, sample: dict[str, np.ndarray]):
    """The dense step, or the row-sparse one when `config.optimizer.sparse_tables`."""
    if not config.optimizer.sparse_tables:
        return make_train_step(model, config)
    return make_sparse_train_step(
        model,
        sparse_tables(model, sample),
        temperature=config.temperature,
        table_learning_rate=config.optimizer.sparse_table_learning_rate,
        table_optimizer=config.optimizer.sparse_table_optimizer,
    )


def _batch_shardings(mesh: Mesh, batch: dict[str, np.ndarray]) -> dict[str, NamedSharding]:
    """Per-example arrays split over `data`; shared extra negatives replicated."""
    per_example = batch_sharding(mesh)
    return {key: replicated(mesh) if key.startswith("negative") else per_example for key in batch}


def _place(
    batch: dict[str, np.ndarray], shardings: dict[str, NamedSharding]
) -> dict[str, jax.Array]:
    """The host batch as arrays on the mesh. Every process builds the same whole batch and
    copies just its own devices' shards (`jax.device_put` would also check, collectively,
    that all processes hold the same batch: a cross-process gather every step)."""
    return {
        key: jax.make_array_from_callback(value.shape, shardings[key], value.__getitem__)
        for key, value in batch.items()
    }


def _abstract_state(
    config: ExperimentConfig, model: TwoTower, sample: dict[str, np.ndarray], steps: int, mesh: Mesh
):
    """(init function, abstract sharded state, state shardings)."""
    optimizer = config.train.optimizer
    tx = make_optimizer(
        learning_rate=optimizer.learning_rate,
        table_learning_rate=optimizer.table_learning_rate,
        weight_decay=optimizer.weight_decay,
        warmup_steps=optimizer.warmup_steps,
        total_steps=steps,
    )

    def init(rng: jax.Array) -> TrainState:
        if optimizer.sparse_tables:
            return init_sparse_state(
                rng,
                model,
                sample,
                tx,
                sparse_tables(model, sample),
                optimizer.sparse_table_optimizer,
            )
        init_rng, state_rng = jax.random.split(rng)
        params = model.init(init_rng, sample)["params"]
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx, rng=state_rng)

    rng = jax.random.PRNGKey(config.seed)
    abstract = jax.eval_shape(init, rng)
    shardings = param_shardings(mesh, abstract)
    abstract = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        abstract,
        shardings,
    )
    return lambda: jax.jit(init, out_shardings=shardings)(rng), abstract, shardings


def _setup(config: ExperimentConfig, data: RetrievalData):
    """(mesh, batches, model, first batch): what training and restoring both build."""
    batches = TrainBatches(data, config.train.batch)
    return make_mesh(config.mesh), batches, build_model(config, data), batches(0)


def _log(writer: MetricsWriter, bar: tqdm.tqdm, step: int, metrics: dict, extra: dict) -> None:
    """Writes the step's metrics (plus `extra`) and shows loss and throughput on the bar."""
    values = {name: float(value) for name, value in jax.device_get(metrics).items()} | extra
    writer.write(step, values)
    bar.set_postfix(
        loss=f"{values['train/loss']:.3f}", ex_per_s=f"{values['train/examples_per_sec']:,.0f}"
    )


def train(
    config: ExperimentConfig, data: RetrievalData, workdir: str | Path, *, progress: bool = True
) -> TrainedModel:
    """Trains (or resumes training of) the two-tower model in `workdir`."""
    workdir = Path(workdir)
    mesh, batches, model, sample = _setup(config, data)
    steps = total_steps(config.train, batches.steps_per_epoch)
    init_fn, abstract, state_shardings = _abstract_state(
        config, model, sample, scheduled_steps(config.train, batches.steps_per_epoch), mesh
    )
    input_shardings = _batch_shardings(mesh, sample)
    step_fn = jax.jit(
        _train_step(model, config.train, sample),
        in_shardings=(state_shardings, input_shardings),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=0,
    )

    with (
        Checkpointer(workdir / CHECKPOINT_DIR, config.checkpoint) as checkpointer,
        MetricsWriter(workdir) as writer,
    ):
        state, _, how = restore_or_initialize(checkpointer, abstract, init_fn, config.checkpoint)
        first = int(state.step)
        bar = tqdm.tqdm(
            total=steps,
            initial=first,
            disable=not progress,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        window_start, window_steps = time.perf_counter(), 0
        try:
            for step in range(first, steps):
                batch = _place(batches(step), input_shardings)
                state, metrics = step_fn(state, batch)
                window_steps += 1
                if (step + 1) % config.train.log_every_steps == 0 or step + 1 == steps:
                    seconds = time.perf_counter() - window_start
                    extra = {
                        "train/examples_per_sec": window_steps
                        * config.train.batch.batch_size
                        / max(seconds, 1e-9),
                        "train/epoch": (step + 1) / batches.steps_per_epoch,
                    }
                    _log(writer, bar, step + 1, metrics, extra)
                    window_start, window_steps = time.perf_counter(), 0
                checkpointer.save(step + 1, state, {"step": step + 1})
                bar.update(1)
        except KeyboardInterrupt:
            # Keep what was done: the next run of the same command resumes from here.
            if not any(leaf.is_deleted() for leaf in jax.tree.leaves(state)):
                checkpointer.save(int(state.step), state, {"step": int(state.step)}, force=True)
                checkpointer.wait_until_finished()
            raise
        bar.close()
        checkpointer.save(int(state.step), state, {"step": int(state.step)}, force=True)
        checkpointer.wait_until_finished()
    return TrainedModel(model=model, state=state, how=how)


def restore_trained(
    config: ExperimentConfig, data: RetrievalData, workdir: str | Path
) -> TrainedModel:
    """The latest checkpointed model of a finished (or interrupted) run in `workdir`."""
    directory = Path(workdir) / CHECKPOINT_DIR
    # Checked before orbax opens the directory: its manager starts background work.
    if not directory.is_dir() or not any(path.name.isdigit() for path in directory.iterdir()):
        raise FileNotFoundError(
            f"No checkpoint in {directory}: run `recjax train` with this --workdir first."
        )
    mesh, batches, model, sample = _setup(config, data)
    steps = scheduled_steps(config.train, batches.steps_per_epoch)
    _, abstract, _ = _abstract_state(config, model, sample, steps, mesh)
    with Checkpointer(directory, config.checkpoint) as checkpointer:
        step = checkpointer.latest_step()
        state, _ = checkpointer.restore(abstract, step)
    return TrainedModel(model=model, state=state, how=f"restored@{step}")
