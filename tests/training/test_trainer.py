"""The training loop: compiles once, loss falls, resumes exactly, same loss on any mesh."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from recjax.config import load_experiment
from recjax.data.examples import RetrievalData
from recjax.data.pipeline import TrainBatches
from recjax.data.sources import load_events
from recjax.sharding.mesh import MeshConfig
from recjax.training.train_state import TrainState
from recjax.training.trainer import build_model, make_train_step, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke():
    config = load_experiment(str(REPO / "experiments" / "online_retail.py:smoke"))
    return config, RetrievalData.build(load_events(config.data).events, config.examples)


ONE_DEVICE = MeshConfig(data=1, model=1)


def _with(config, *, steps, mesh=ONE_DEVICE, log_every=1):
    train_config = dataclasses.replace(config.train, max_steps=steps, log_every_steps=log_every)
    return dataclasses.replace(config, train=train_config, mesh=mesh)


def _losses(workdir: Path) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in lines]


def test_train_step_compiles_once(smoke):
    config, data = smoke
    batches = TrainBatches(data, config.train.batch)
    model = build_model(config, data)
    params = model.init(jax.random.PRNGKey(0), batches(0))["params"]
    import optax

    state = TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.adam(1e-3), rng=jax.random.PRNGKey(1)
    )
    traces = []
    train_step = make_train_step(model, config.train)

    def counted_step(state, batch):
        traces.append(1)  # runs only while jax traces (compiles) the step
        return train_step(state, batch)

    step = jax.jit(counted_step, donate_argnums=0)
    for index in range(3):
        state, metrics = step(state, batches(index))
    assert len(traces) == 1
    assert int(state.step) == 3 and np.isfinite(float(metrics["train/loss"]))


def test_loss_falls_on_real_data(smoke, tmp_path):
    config, data = smoke
    train(_with(config, steps=30, log_every=5), data, tmp_path, progress=False)
    losses = _losses(tmp_path)
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < losses[0] - 0.3, losses


def test_resumed_run_equals_uninterrupted_run(smoke, tmp_path):
    config, data = smoke
    straight = train(_with(config, steps=6), data, tmp_path / "straight", progress=False)
    first = train(_with(config, steps=3), data, tmp_path / "resumed", progress=False)
    assert first.how == "fresh" and int(first.state.step) == 3
    resumed = train(_with(config, steps=6), data, tmp_path / "resumed", progress=False)
    assert resumed.how == "resumed@3"
    jax.tree.map(np.testing.assert_array_equal, straight.state.params, resumed.state.params)
    np.testing.assert_array_equal(
        _losses(tmp_path / "straight")[3:], _losses(tmp_path / "resumed")[3:]
    )


def test_same_losses_on_one_device_and_on_8x1_and_2x4_meshes(smoke, tmp_path):
    config, data = smoke
    assert len(jax.devices()) == 8
    losses = {}
    for name, mesh in {
        "1x1": MeshConfig(data=1, model=1),
        "8x1": MeshConfig(data=-1, model=1),
        "2x4": MeshConfig(data=2, model=4),
    }.items():
        trained = train(_with(config, steps=3, mesh=mesh), data, tmp_path / name, progress=False)
        losses[name] = _losses(tmp_path / name)
        table = trained.state.params["token_embedding"]["embedding"]
        expected_shards = 4 if name == "2x4" else 1
        assert len({str(shard.index) for shard in table.addressable_shards}) == expected_shards
    np.testing.assert_allclose(losses["8x1"], losses["1x1"], rtol=1e-5)
    np.testing.assert_allclose(losses["2x4"], losses["1x1"], rtol=1e-5)


def _sparse(config):
    optimizer = dataclasses.replace(config.train.optimizer, sparse_tables=True)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, optimizer=optimizer))


def test_sparse_table_training_resumes_exactly(smoke, tmp_path):
    config, data = smoke
    config = _sparse(config)
    straight = train(_with(config, steps=4), data, tmp_path / "straight", progress=False)
    train(_with(config, steps=2), data, tmp_path / "resumed", progress=False)
    resumed = train(_with(config, steps=4), data, tmp_path / "resumed", progress=False)
    assert resumed.how == "resumed@2"
    jax.tree.map(np.testing.assert_array_equal, straight.state.params, resumed.state.params)
    jax.tree.map(np.testing.assert_array_equal, straight.state.opt_state, resumed.state.opt_state)


def test_sparse_table_state_is_sharded_like_its_table(smoke, tmp_path):
    config, data = smoke
    trained = train(
        _with(_sparse(config), steps=2, mesh=MeshConfig(data=2, model=4)),
        data,
        tmp_path,
        progress=False,
    )
    table = trained.state.params["token_embedding"]["embedding"]
    accumulator = trained.state.opt_state["tables"]["token_embedding"]["embedding"]
    assert table.sharding.spec == accumulator.sum_of_squares.sharding.spec
    assert len({str(shard.index) for shard in table.addressable_shards}) == 4
