"""The experiment config: one frozen dataclass tree, loadable from experiment files and JSON."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import types
import typing
from pathlib import Path
from typing import Any

from recjax.data.examples import ExampleConfig
from recjax.data.pipeline import BatchConfig
from recjax.data.sources import DataConfig
from recjax.models.sequence import SequenceEncoderConfig
from recjax.models.two_tower import TwoTowerConfig
from recjax.retrieval.scann_index import ScannConfig
from recjax.sharding.mesh import MeshConfig
from recjax.training.checkpoint import CheckpointConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """Separate optimizers for embedding tables and dense layers."""

    learning_rate: float = 2e-3  # Adam(W) step size for dense layers.
    table_learning_rate: float = 2e-3  # Adam step size for embedding tables.
    weight_decay: float = 1e-4  # Decoupled weight decay on dense layers only.
    warmup_steps: int = 100  # Linear warm-up of both learning rates.
    # Row-sparse Adagrad for the tables one batch cannot cover: a step costs what the
    # batch touches, not what the table holds (recjax.training.sparse_step).
    sparse_tables: bool = False
    sparse_table_optimizer: str = "adagrad"  # "adagrad", "rowwise_adagrad" or "adam".
    sparse_table_learning_rate: float = 0.05  # Step size of the sparse tables' optimizer.


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How long and how to train."""

    num_epochs: float = 4.0  # Passes over the training positions.
    max_steps: int | None = None  # Stop after this many steps (overrides num_epochs if smaller).
    temperature: float = 0.05  # Softmax temperature over L2-normalised vectors.
    log_every_steps: int = 50  # Metrics to metrics.jsonl/TensorBoard every this many steps.
    # Model selection on validation: every this many epochs (and at the end), score the
    # validation queries (`EvalConfig.selection_metric`); the best step's params are kept
    # and evaluated. None: no validation during training; the last step's are evaluated.
    validate_every_epochs: float | None = None
    # Stop after this many validations in a row without improvement (0: never stop early).
    early_stopping_patience: int = 0
    batch: BatchConfig = BatchConfig()
    optimizer: OptimizerConfig = OptimizerConfig()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Full-ranking evaluation and baselines."""

    ks: tuple[int, ...] = (10, 20, 50, 100)  # Metric cut-offs.
    exclude_seen: bool = False  # Remove items the user had before the query from candidates.
    cooccurrence_window: int = 5  # Baseline: pairs within this many positions co-occur.
    batch_size: int = 256  # Users scored at once.
    max_users: int | None = None  # Evaluate only the first N users (smoke runs).
    selection_metric: str = "ndcg@10"  # Validation metric that picks the best step.
    show_examples: int = 3  # Users whose recommendations are printed after training.


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything one run needs. The defaults are the main job on the embedded dataset."""

    name: str = "online_retail"
    seed: int = 0  # Parameter initialisation seed.
    data: DataConfig = DataConfig()
    examples: ExampleConfig = ExampleConfig()
    model: TwoTowerConfig | SequenceEncoderConfig = TwoTowerConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    scann: ScannConfig = ScannConfig()
    mesh: MeshConfig = MeshConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()


def smoke_variant(config: ExperimentConfig) -> ExperimentConfig:
    """A seconds-long run of `config` on its real data: 30 small steps, 300 users evaluated."""
    return dataclasses.replace(
        config,
        name=f"{config.name}_smoke",
        train=dataclasses.replace(
            config.train,
            num_epochs=1.0,
            max_steps=30,
            log_every_steps=10,
            batch=dataclasses.replace(config.train.batch, batch_size=256),
            optimizer=dataclasses.replace(config.train.optimizer, warmup_steps=5),
        ),
        eval=dataclasses.replace(config.eval, max_users=300, show_examples=1),
    )


def load_experiment(spec: str) -> ExperimentConfig:
    """Loads `path/to/experiment.py[:variant]` by calling its `get_config(variant)`."""
    path_text, colon, variant = spec.partition(":")
    path = Path(path_text)
    if not path.exists():
        raise FileNotFoundError(f"Experiment file not found: {path}")
    if path.is_dir() or path.suffix != ".py":
        raise ValueError(f"{path} is not an experiment file (a .py file with get_config).")
    if colon and not variant:
        raise ValueError(f"{spec}: empty variant after ':' (e.g. {path_text}:smoke).")
    module_spec = importlib.util.spec_from_file_location(f"recjax_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config(variant) function.")
    config = module.get_config(variant or "default")
    if not isinstance(config, ExperimentConfig):
        raise TypeError(
            f"{path}:get_config returned {type(config).__name__}, not ExperimentConfig."
        )
    return config


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2)


def from_json(text: str) -> ExperimentConfig:
    return _build(ExperimentConfig, json.loads(text))


def _build(cls: type, values: Any) -> Any:
    """Rebuilds a (nested) config dataclass from `dataclasses.asdict` output."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {unknown[0]!r}")
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in values:
            kwargs[field.name] = _convert(hints[field.name], values[field.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    configs = [option for option in options if dataclasses.is_dataclass(option)]
    if len(configs) > 1:  # Tagged union: the saved `kind` names the config class.
        kinds = {option.__dataclass_fields__["kind"].default: option for option in configs}
        kind = value.get("kind", next(iter(kinds)))
        if kind not in kinds:
            raise ValueError(f"Unknown kind {kind!r}; expected one of {', '.join(kinds)}.")
        return _build(kinds[kind], value)
    for option in options:
        if dataclasses.is_dataclass(option):
            return _build(option, value)
        if typing.get_origin(option) is tuple:
            return tuple(value)
    return value
