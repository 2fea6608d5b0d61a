import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.losses.multitask import TaskSpec
from recjax.models.ranking import (
    RankingFeatures,
    RankingModel,
    RankingModelConfig,
    parameter_count,
    scores,
)

FEATURES = RankingFeatures(
    num_users=10,
    num_items=12,
    num_categorical_rows=7,
    num_categorical=2,
    num_numeric=3,
    session_length=4,
    num_positions=3,
)
TASKS = (
    TaskSpec(name="click", kind="binary"),
    TaskSpec(name="like", kind="binary"),
    TaskSpec(name="dwell", kind="regression"),
)


def _batch(b: int = 5) -> dict[str, jnp.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "user": jnp.asarray(rng.integers(1, 10, b), jnp.int32),
        "item": jnp.asarray(rng.integers(1, 12, b), jnp.int32),
        "categorical": jnp.asarray(rng.integers(0, 7, (b, 2)), jnp.int32),
        "numeric": jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
        "session": jnp.asarray([[0, 0, 3, 4]] * b, jnp.int32),
        "position": jnp.asarray(rng.integers(1, 4, b), jnp.int32),
    }


def _init(model: RankingModel, batch) -> dict:
    return nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])


def _model(architecture: str, **changes) -> RankingModel:
    config = RankingModelConfig(architecture=architecture, num_experts=3, **changes)
    return RankingModel(features=FEATURES, config=config, tasks=TASKS)


@pytest.mark.parametrize("architecture", ["mmoe", "shared_bottom", "single_task"])
def test_one_forward_pass_returns_every_task(architecture):
    model = _model(architecture)
    batch = _batch()
    params = _init(model, batch)
    outputs = model.apply({"params": params}, batch)
    assert set(outputs) == {"click", "like", "dwell"}
    for output in outputs.values():
        assert output.shape == (5,)
        assert np.isfinite(np.asarray(output)).all()
    probabilities = scores(outputs, TASKS)
    assert ((probabilities["click"] > 0) & (probabilities["click"] < 1)).all()
    np.testing.assert_array_equal(probabilities["dwell"], outputs["dwell"])


def test_mmoe_gates_are_distributions_per_task():
    model = _model("mmoe")
    batch = _batch()
    params = _init(model, batch)
    _, state = model.apply({"params": params}, batch, mutable=["intermediates"])
    (gates,) = state["intermediates"]["network"]["gates"]
    assert set(gates) == {"click", "like", "dwell"}
    for gate in gates.values():
        assert gate.shape == (5, 3)
        assert (np.asarray(gate) >= 0).all()
        np.testing.assert_allclose(np.asarray(gate).sum(axis=1), 1.0, rtol=1e-6)
    # Each task has its own gate, so the mixtures differ between tasks.
    assert not np.allclose(gates["click"], gates["like"])


def test_single_task_models_share_no_parameter():
    model = _model("single_task")
    batch = _batch()
    params = _init(model, batch)
    grads = jax.grad(lambda p: model.apply({"params": p}, batch)["click"].sum())(params)
    others = [grads["network"][f"{name}_model"] for name in ("like", "dwell")]
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(others))
    assert float(optax_norm(grads["network"]["click_model"])) > 0


def optax_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def test_position_bias_only_in_training_positions_and_binary_heads():
    model = _model("shared_bottom")
    batch = _batch()
    params = _init(model, batch)
    # Give every slot a distinct bias so positions matter.
    bias = jnp.arange(4 * 2, dtype=jnp.float32).reshape(4, 2)
    params = {**params, "position_bias": {"embedding": bias}}
    at = {p: model.apply({"params": params}, {**batch, "position": jnp.full(5, p)}) for p in (0, 2)}
    np.testing.assert_allclose(at[2]["click"] - at[0]["click"], bias[2, 0], rtol=1e-5)
    np.testing.assert_allclose(at[2]["like"] - at[0]["like"], bias[2, 1], rtol=1e-5)
    np.testing.assert_array_equal(at[2]["dwell"], at[0]["dwell"])
    # Position 0 (scoring) ignores the table's row 0 entirely.
    params0 = {**params, "position_bias": {"embedding": bias.at[0].set(100.0)}}
    np.testing.assert_array_equal(
        model.apply({"params": params0}, {**batch, "position": jnp.zeros(5, jnp.int32)})["click"],
        at[0]["click"],
    )


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_session_padding_is_ignored(pooling):
    model = _model("mmoe", session_pooling=pooling)
    batch = _batch()
    params = _init(model, batch)
    # Make the PAD row of the item table huge: padded slots must not notice.
    table = params["network"]["FeatureEncoder_0"]["item"]["embedding"]
    changed = jax.tree.map(lambda x: x, params)
    changed["network"]["FeatureEncoder_0"]["item"]["embedding"] = table.at[0].set(1e3)
    batch = {**batch, "item": jnp.full(5, 5, jnp.int32)}
    np.testing.assert_allclose(
        model.apply({"params": params}, batch)["dwell"],
        model.apply({"params": changed}, batch)["dwell"],
        rtol=1e-5,
    )


def test_parameter_count_and_bad_architecture():
    model = _model("shared_bottom")
    params = _init(model, _batch())
    assert parameter_count(params) == sum(x.size for x in jax.tree.leaves(params))
    with pytest.raises(ValueError, match="architecture"):
        bad = dataclasses.replace(model, config=RankingModelConfig(architecture="moe"))
        bad.init(jax.random.PRNGKey(0), _batch())
