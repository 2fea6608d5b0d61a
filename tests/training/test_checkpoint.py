"""Checkpoint round trips, resharding on restore, resume order, save/keep schedule."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from recjax.training.checkpoint import CheckpointConfig, Checkpointer, restore_or_initialize
from recjax.training.train_state import TrainState

MODEL = nn.Dense(4)
TX = optax.adam(1e-2)


def _dense_state(seed: int, updates: int) -> TrainState:
    """A tiny Dense + adam state after `updates` steps of a squared-error loss."""
    x = jax.random.normal(jax.random.PRNGKey(100 + seed), (5, 3))
    params = MODEL.init(jax.random.PRNGKey(seed), x)
    state = TrainState.create(
        apply_fn=MODEL.apply, params=params, tx=TX, rng=jax.random.PRNGKey(seed + 1)
    )

    def loss(p):
        return jnp.mean(state.apply_fn(p, x) ** 2)

    for _ in range(updates):
        state = state.apply_gradients(jax.grad(loss)(state.params))
    return state


def _assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


def test_round_trip_restores_every_leaf_and_data_position(tmp_path):
    state = _dense_state(seed=0, updates=2)
    config = CheckpointConfig(save_every_steps=1)
    with Checkpointer(tmp_path / "ckpt", config) as ckpt:
        assert ckpt.save(int(state.step), state, {"epoch": 1, "batch": 17})

    # A new Checkpointer, as in a restarted process.
    with Checkpointer(tmp_path / "ckpt", config) as ckpt:
        assert ckpt.latest_step() == 2
        restored, position = ckpt.restore(jax.eval_shape(lambda: state))

    assert position == {"epoch": 1, "batch": 17}
    assert int(restored.step) == 2 and restored.step.dtype == jnp.int32
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
    _assert_trees_equal(restored.params, state.params)
    _assert_trees_equal(restored.opt_state, state.opt_state)
    assert restored.opt_state[0].count == 2  # adam's step count came back too
    assert restored.apply_fn == MODEL.apply and restored.tx is TX
    # The restored state trains on exactly like the original.
    grads = jax.tree.map(jnp.ones_like, state.params)
    _assert_trees_equal(restored.apply_gradients(grads), state.apply_gradients(grads))


def test_restore_reshards_into_abstract_target(tmp_path):
    table = jnp.arange(64 * 4, dtype=jnp.float32).reshape(64, 4)
    state = TrainState.create(
        apply_fn=None, params={"table": table}, tx=TX, rng=jax.random.PRNGKey(0)
    )
    state = state.apply_gradients({"table": jnp.ones_like(table)})
    assert len(state.params["table"].sharding.device_set) == 1  # saved from one device
    with Checkpointer(tmp_path, CheckpointConfig(save_every_steps=1)) as ckpt:
        ckpt.save(1, state, {"batch": 1})
        ckpt.wait_until_finished()

        mesh = Mesh(np.array(jax.devices()).reshape(1, 8), ("data", "model"))
        rows = NamedSharding(mesh, P("model", None))
        replicated = NamedSharding(mesh, P())

        def with_sharding(leaf):
            sharding = rows if leaf.shape == (64, 4) else replicated
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

        abstract = jax.tree.map(with_sharding, jax.eval_shape(lambda: state))
        restored, _ = ckpt.restore(abstract)

    assert len(jax.devices()) == 8
    for array in (restored.params["table"], restored.opt_state[0].mu["table"]):
        assert array.sharding == rows
        assert {shard.data.shape for shard in array.addressable_shards} == {(8, 4)}
    assert restored.step.sharding == replicated
    _assert_trees_equal(restored.params, state.params)
    _assert_trees_equal(restored.opt_state, state.opt_state)


def test_restore_or_initialize_takes_the_three_paths_in_order(tmp_path):
    other_run = _dense_state(seed=1, updates=3)
    with Checkpointer(tmp_path / "other", CheckpointConfig(save_every_steps=1)) as ckpt:
        ckpt.save(3, other_run, {"batch": 3})

    calls = []

    def init_fn():
        calls.append(1)
        return _dense_state(seed=2, updates=0)

    fresh = _dense_state(seed=2, updates=0)
    abstract = jax.eval_shape(init_fn)
    calls.clear()

    # 1. Nothing anywhere: fresh.
    config = CheckpointConfig(save_every_steps=1)
    with Checkpointer(tmp_path / "run_a", config) as ckpt:
        state, position, how = restore_or_initialize(ckpt, abstract, init_fn, config)
    assert (how, position, len(calls)) == ("fresh", {}, 1)
    _assert_trees_equal(state, fresh)

    # 2. No own checkpoint, init_from given: its params, fresh optimizer/step/rng.
    config = CheckpointConfig(save_every_steps=1, init_from=str(tmp_path / "other"))
    with Checkpointer(tmp_path / "run_b", config) as ckpt:
        state, position, how = restore_or_initialize(ckpt, abstract, init_fn, config)
        assert (how, position) == ("warm-start", {})
        _assert_trees_equal(state.params, other_run.params)
        assert int(state.step) == 0
        _assert_trees_equal(state.rng, fresh.rng)
        _assert_trees_equal(state.opt_state, TX.init(other_run.params))  # zero moments
        own = state.apply_gradients(jax.tree.map(jnp.ones_like, state.params))
        own = own.replace(step=jnp.asarray(5, jnp.int32))
        ckpt.save(5, own, {"batch": 40})

    # 3. Own checkpoint beats init_from.
    calls.clear()
    with Checkpointer(tmp_path / "run_b", config) as ckpt:
        state, position, how = restore_or_initialize(ckpt, abstract, init_fn, config)
    assert (how, position, calls) == ("resumed@5", {"batch": 40}, [])
    _assert_trees_equal(state, own)


def test_save_schedule_force_and_max_to_keep(tmp_path):
    state = _dense_state(seed=0, updates=0)
    with Checkpointer(tmp_path, CheckpointConfig(save_every_steps=2, max_to_keep=2)) as ckpt:
        saved = [s for s in range(1, 8) if ckpt.save(s, state, {"batch": s})]
        assert saved == [2, 4, 6]
        assert ckpt.save(7, state, {"batch": 7}, force=True)
        # Forcing a step that is already saved is a no-op, not an error.
        assert not ckpt.save(7, state, {"batch": 7}, force=True)
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [6, 7]
    on_disk = sorted(int(name) for name in os.listdir(tmp_path) if name.isdigit())
    assert on_disk == [6, 7]
    with Checkpointer(tmp_path, CheckpointConfig()) as ckpt:
        assert ckpt.latest_step() == 7
        _, position = ckpt.restore(jax.eval_shape(lambda: state), step=6)
        assert position == {"batch": 6}
        with pytest.raises(FileNotFoundError):
            ckpt.restore(jax.eval_shape(lambda: state), step=4)


def test_config_rejects_nonsense(tmp_path):
    with pytest.raises(ValueError, match="save_every_steps"):
        Checkpointer(tmp_path, CheckpointConfig(save_every_steps=0))
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path, CheckpointConfig(max_to_keep=0))
