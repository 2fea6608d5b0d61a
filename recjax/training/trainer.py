"""The training loop: mesh → abstract state → sharded init → restore → steps → (validate).

One loop trains every model family: the two-tower on (query, next item) examples and the
sequence encoders on packed event sequences; `build_model`, `make_batches` and
`_objective` are the only places that tell them apart.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh, NamedSharding

from recjax.config import ExperimentConfig, TrainConfig
from recjax.data.examples import RetrievalData
from recjax.data.pipeline import TrainBatches
from recjax.data.sequence_batches import SequenceBatches
from recjax.models.sequence import ItemTokens, SequenceEncoder, SequenceEncoderConfig
from recjax.models.two_tower import TwoTower
from recjax.sharding.mesh import batch_sharding, make_mesh, param_shardings, replicated
from recjax.training.checkpoint import Checkpointer, restore_or_initialize
from recjax.training.metrics_writer import MetricsWriter
from recjax.training.objective import next_item_loss, two_tower_loss
from recjax.training.optimizer import make_optimizer
from recjax.training.sparse_step import init_sparse_state, make_sparse_train_step, sparse_tables
from recjax.training.train_state import TrainState

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # The params of the best validation step, when training validates.

Model = TwoTower | SequenceEncoder
Batches = TrainBatches | SequenceBatches
# validate(model, params) -> the selection metric on the validation queries (higher = better).
Validator = Callable[[Model, Any], float]


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    model: Model
    state: TrainState
    how: str  # "fresh", "warm-start", "resumed@STEP", "restored@STEP" (+ "best@STEP").


TABLE_ROW_MULTIPLE = 128  # Table rows are padded to this, so any model axis up to it divides.


def build_model(config: ExperimentConfig, data: RetrievalData) -> Model:
    """The model for `data`, its tables padded to a multiple of TABLE_ROW_MULTIPLE rows
    (the padding rows are never looked up or scored) so they split over the `model` axis
    of any mesh and a table never has to fit on one device."""
    if isinstance(config.model, SequenceEncoderConfig):
        return SequenceEncoder(
            config=config.model,
            num_items=padded_rows(data.num_items),
            max_length=data.config.history_length,
            first_item=data.items.first_known,
            end_item=data.num_items,
            item_tokens=_item_tokens(config, data) if config.model.item_features else None,
        )
    return TwoTower(
        config=config.model,
        num_users=padded_rows(len(data.users)),
        num_items=padded_rows(data.num_items),
        num_contexts=padded_rows(len(data.contexts)),
        num_text_buckets=padded_rows(data.config.text_buckets),
    )


def _item_tokens(config: ExperimentConfig, data: RetrievalData) -> ItemTokens:
    """The data's item tokens, padded with empty rows to the padded item table."""
    if not data.item_tokens.any():
        raise ValueError(
            f"item_features needs item tokens, and the data has none: examples.text_feature "
            f"is {config.examples.text_feature!r} (for the S3-Rec files: 'attributes')."
        )
    tokens = np.zeros((padded_rows(data.num_items), data.item_tokens.shape[1]), np.int32)
    tokens[: data.num_items] = data.item_tokens
    return ItemTokens(tokens, num_buckets=padded_rows(data.config.text_buckets))


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


def make_batches(config: ExperimentConfig, data: RetrievalData, model: Model) -> Batches:
    """Packed event sequences for a sequence encoder, (query, next item) pairs otherwise."""
    if isinstance(model, SequenceEncoder):
        return SequenceBatches(data, config.train.batch, model.max_length)
    return TrainBatches(data, config.train.batch)


def _objective(model: Model, config: TrainConfig) -> Callable[..., jax.Array]:
    """loss(params, batch, rng) of the model's family."""
    if isinstance(model, SequenceEncoder):
        return lambda params, batch, rng: next_item_loss(model, params, batch, rng)
    return lambda params, batch, rng: two_tower_loss(
        model, params, batch, rng, temperature=config.temperature
    )


def make_train_step(model: Model, config: TrainConfig):
    """`train_step(state, batch) -> (state, metrics)`: one pure update."""
    objective = _objective(model, config)

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        loss, grads = jax.value_and_grad(lambda params: objective(params, batch, rng))(state.params)
        metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm(grads)}
        return state.apply_gradients(grads), metrics

    return train_step


def _train_step(model: Model, config: TrainConfig, sample: dict[str, np.ndarray]):
    """The dense step, or the row-sparse one when `config.optimizer.sparse_tables`."""
    if not config.optimizer.sparse_tables:
        return make_train_step(model, config)
    if isinstance(model, SequenceEncoder):
        raise ValueError("sparse_tables is implemented for the two-tower only.")
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
    config: ExperimentConfig, model: Model, sample: dict[str, np.ndarray], steps: int, mesh: Mesh
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
    model = build_model(config, data)
    batches = make_batches(config, data, model)
    return make_mesh(config.mesh), batches, model, batches(0)


def _log(writer: MetricsWriter, bar: tqdm.tqdm, step: int, metrics: dict, extra: dict) -> None:
    """Writes the step's metrics (plus `extra`) and shows loss and throughput on the bar."""
    values = {name: float(value) for name, value in jax.device_get(metrics).items()} | extra
    writer.write(step, values)
    bar.set_postfix(
        loss=f"{values['train/loss']:.3f}", ex_per_s=f"{values['train/examples_per_sec']:,.0f}"
    )


@dataclasses.dataclass
class _Selection:
    """Model selection on validation: the best step so far and the patience used up.
    Saved with each checkpoint (as integers), so a resumed run selects as one that never
    stopped would."""

    best_metric: float = -float("inf")
    best_step: int = 0
    without_improvement: int = 0
    stopped: bool = False

    SCALE = 10**9  # Metrics are stored as integer nano-units in the checkpoint.

    @classmethod
    def restore(cls, position: dict[str, int]) -> _Selection:
        if "best_step" not in position:
            return cls()
        return cls(
            best_metric=position["best_metric_nano"] / cls.SCALE,
            best_step=position["best_step"],
            without_improvement=position["without_improvement"],
            stopped=bool(position["stopped"]),
        )

    def position(self) -> dict[str, int]:
        if not self.best_step:
            return {}
        return {
            "best_metric_nano": round(self.best_metric * self.SCALE),
            "best_step": self.best_step,
            "without_improvement": self.without_improvement,
            "stopped": int(self.stopped),
        }

    def update(self, step: int, metric: float, patience: int) -> bool:
        """Records a validation; True when it is the best so far."""
        if metric > self.best_metric:
            self.best_metric, self.best_step, self.without_improvement = metric, step, 0
            return True
        self.without_improvement += 1
        self.stopped = patience > 0 and self.without_improvement >= patience
        return False


def train(
    config: ExperimentConfig,
    data: RetrievalData,
    workdir: str | Path,
    *,
    progress: bool = True,
    validate: Validator | None = None,
) -> TrainedModel:
    """Trains (or resumes training of) the configured model in `workdir`.

    With `validate` and `config.train.validate_every_epochs`, the model is scored on the
    validation queries on that schedule (and at the end); the best step's params are
    checkpointed in `workdir/best` and returned, and training stops early after
    `early_stopping_patience` validations without improvement.
    """
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
    every = None
    if validate is not None and config.train.validate_every_epochs is not None:
        every = max(round(config.train.validate_every_epochs * batches.steps_per_epoch), 1)
    metric_name = f"valid/{config.eval.selection_metric}"
    examples_per_step = (
        batches.num_sequences / batches.steps_per_epoch
        if isinstance(batches, SequenceBatches)
        else config.train.batch.batch_size
    )

    with (
        Checkpointer(workdir / CHECKPOINT_DIR, config.checkpoint) as checkpointer,
        Checkpointer(
            workdir / BEST_DIR, dataclasses.replace(config.checkpoint, max_to_keep=1)
        ) as best,
        MetricsWriter(workdir) as writer,
    ):
        state, position, how = restore_or_initialize(
            checkpointer, abstract, init_fn, config.checkpoint
        )
        selection = _Selection.restore(position)
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
                if selection.stopped:
                    break
                batch = _place(batches(step), input_shardings)
                state, metrics = step_fn(state, batch)
                window_steps += 1
                done = step + 1
                if done % config.train.log_every_steps == 0 or done == steps:
                    # Steps dispatch asynchronously: wait for this one before reading the clock.
                    jax.block_until_ready(metrics)
                    seconds = time.perf_counter() - window_start
                    extra = {
                        "train/examples_per_sec": window_steps
                        * examples_per_step
                        / max(seconds, 1e-9),
                        "train/epoch": done / batches.steps_per_epoch,
                    }
                    _log(writer, bar, done, metrics, extra)
                if every and (done % every == 0 or done == steps):
                    metric = validate(model, state.params)
                    if selection.update(done, metric, config.train.early_stopping_patience):
                        best.save(done, state, {"step": done}, force=True)
                    writer.write(done, {metric_name: metric})
                    bar.set_postfix_str(
                        f"{metric_name}={metric:.4f} (best {selection.best_metric:.4f} "
                        f"@{selection.best_step})"
                    )
                if done % config.train.log_every_steps == 0 or done == steps:
                    window_start, window_steps = time.perf_counter(), 0
                checkpointer.save(done, state, {"step": done, **selection.position()})
                bar.update(1)
        except KeyboardInterrupt:
            # Keep what was done: the next run of the same command resumes from here.
            if not any(leaf.is_deleted() for leaf in jax.tree.leaves(state)):
                checkpointer.save(
                    int(state.step),
                    state,
                    {"step": int(state.step), **selection.position()},
                    force=True,
                )
                checkpointer.wait_until_finished()
            raise
        bar.close()
        checkpointer.save(
            int(state.step), state, {"step": int(state.step), **selection.position()}, force=True
        )
        checkpointer.wait_until_finished()
        if selection.best_step:
            best.wait_until_finished()
            state, _ = best.restore(abstract)
            how += f", best@{selection.best_step}"
            if selection.stopped:
                how += " (stopped early)"
    return TrainedModel(model=model, state=state, how=how)


def restore_trained(
    config: ExperimentConfig, data: RetrievalData, workdir: str | Path
) -> TrainedModel:
    """The model a finished (or interrupted) run in `workdir` selected: its best
    validation step when it validated, else its latest checkpoint."""
    directory = Path(workdir) / CHECKPOINT_DIR
    # Checked before orbax opens the directory: its manager starts background work.
    if not _has_steps(directory):
        raise FileNotFoundError(
            f"No checkpoint in {directory}: run `recjax train` with this --workdir first."
        )
    if _has_steps(Path(workdir) / BEST_DIR):
        directory = Path(workdir) / BEST_DIR
    mesh, batches, model, sample = _setup(config, data)
    steps = scheduled_steps(config.train, batches.steps_per_epoch)
    _, abstract, _ = _abstract_state(config, model, sample, steps, mesh)
    with Checkpointer(directory, config.checkpoint) as checkpointer:
        step = checkpointer.latest_step()
        state, _ = checkpointer.restore(abstract, step)
    return TrainedModel(model=model, state=state, how=f"restored@{step}")


def _has_steps(directory: Path) -> bool:
    return directory.is_dir() and any(path.name.isdigit() for path in directory.iterdir())
