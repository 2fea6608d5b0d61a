"""Sequence encoders in the shared training loop: resume, model selection, early stopping,
the same losses on any mesh, and the checkpoint the evaluation reads."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from recjax.config import load_experiment
from recjax.data.examples import RetrievalData
from recjax.data.sources import load_events
from recjax.sharding.mesh import MeshConfig
from recjax.training.trainer import restore_trained, train

REPO = Path(__file__).resolve().parents[2]
ONE_DEVICE = MeshConfig(data=1, model=1)


@pytest.fixture(scope="module")
def lastfm(shared_data):
    shared_data("s3rec-seqrec/LastFM.txt")
    config = load_experiment(str(REPO / "experiments" / "sequential.py:lastfm_sasrec_smoke"))
    return config, RetrievalData.build(load_events(config.data).events, config.examples)


def _with(config, *, steps, mesh=ONE_DEVICE, every=None, patience=0):
    train_config = dataclasses.replace(
        config.train,
        max_steps=steps,
        log_every_steps=1,
        validate_every_epochs=every,
        early_stopping_patience=patience,
    )
    return dataclasses.replace(config, train=train_config, mesh=mesh)


def _losses(workdir: Path) -> list[float]:
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [line["train/loss"] for line in lines if "train/loss" in line]


def test_resumed_run_equals_uninterrupted_run(lastfm, tmp_path):
    config, data = lastfm
    straight = train(_with(config, steps=6), data, tmp_path / "straight", progress=False)
    train(_with(config, steps=3), data, tmp_path / "resumed", progress=False)
    resumed = train(_with(config, steps=6), data, tmp_path / "resumed", progress=False)
    assert resumed.how == "resumed@3"
    jax.tree.map(np.testing.assert_array_equal, straight.state.params, resumed.state.params)
    np.testing.assert_array_equal(
        _losses(tmp_path / "straight")[3:], _losses(tmp_path / "resumed")[3:]
    )


def test_same_losses_on_one_device_and_on_a_2x4_mesh(lastfm, tmp_path):
    config, data = lastfm
    losses = {}
    for name, mesh in {"1x1": ONE_DEVICE, "2x4": MeshConfig(data=2, model=4)}.items():
        trained = train(_with(config, steps=3, mesh=mesh), data, tmp_path / name, progress=False)
        losses[name] = _losses(tmp_path / name)
        table = trained.state.params["item_embedding"]["embedding"]
        assert len({str(shard.index) for shard in table.addressable_shards}) == (
            4 if name == "2x4" else 1
        )
    np.testing.assert_allclose(losses["2x4"], losses["1x1"], rtol=1e-5)


def test_best_validation_step_is_kept_and_training_stops_early(lastfm, tmp_path):
    config, data = lastfm
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9])  # best at the 2nd validation, then 2 worse
    calls = []

    def validate(model, params):
        calls.append(1)
        return next(scripted)

    steps_per_validation = 2
    every = steps_per_validation / _steps_per_epoch(config, data)
    config = _with(config, steps=20, every=every, patience=2)
    trained = train(config, data, tmp_path / "run", progress=False, validate=validate)
    assert len(calls) == 4  # stopped after the 4th validation: the 0.9 never came
    assert trained.how == "fresh, best@4 (stopped early)"
    # The returned params are those of step 4, as a run stopped there would have them.
    at_best = train(_with(config, steps=4), data, tmp_path / "four", progress=False)
    jax.tree.map(np.testing.assert_array_equal, trained.state.params, at_best.state.params)
    restored = restore_trained(config, data, tmp_path / "run")
    assert restored.how == "restored@4"
    jax.tree.map(np.testing.assert_array_equal, trained.state.params, restored.state.params)
    # Running the finished command again trains no further.
    again = train(config, data, tmp_path / "run", progress=False, validate=validate)
    assert again.how.startswith("resumed@8") and len(calls) == 4


def _steps_per_epoch(config, data) -> int:
    from recjax.training.trainer import build_model, make_batches

    return make_batches(config, data, build_model(config, data)).steps_per_epoch


def test_sampled_softmax_training_loss_falls(lastfm, tmp_path):
    config, data = lastfm
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, loss="sampled_softmax"),
        train=dataclasses.replace(
            config.train,
            batch=dataclasses.replace(config.train.batch, num_uniform_negatives=256),
        ),
    )
    train(_with(config, steps=24), data, tmp_path, progress=False)
    losses = _losses(tmp_path)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2, losses
