"""The row-sparse train step equals the dense one (Adagrad on tables) on real data."""

from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from recjax.config import load_experiment
from recjax.data.examples import RetrievalData
from recjax.data.pipeline import BatchConfig, TrainBatches
from recjax.data.sources import load_events
from recjax.training.objective import two_tower_loss
from recjax.training.sparse_step import (
    init_sparse_state,
    make_sparse_train_step,
    sparse_tables,
    split_params,
)
from recjax.training.train_state import TrainState
from recjax.training.trainer import build_model

REPO = Path(__file__).resolve().parents[2]
TABLE_LR = 0.05


@pytest.fixture(scope="module")
def setup():
    config = load_experiment(str(REPO / "experiments" / "online_retail.py:smoke"))
    data = RetrievalData.build(load_events(config.data).events, config.examples)
    batches = TrainBatches(data, BatchConfig(batch_size=64, num_uniform_negatives=8))
    return config, build_model(config, data), batches


def _dense_reference(model, tables, batch, temperature, table_tx):
    sparse_names = {table.name for table in tables}

    def label(params):
        return {
            key: jax.tree.map(lambda _, k=key: "table" if k in sparse_names else "dense", value)
            for key, value in params.items()
        }

    tx = optax.multi_transform({"dense": optax.adam(1e-3), "table": optax.adagrad(TABLE_LR)}, label)

    def step(state, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        loss, grads = jax.value_and_grad(
            lambda p: two_tower_loss(model, p, batch, rng, temperature=temperature)
        )(state.params)
        return state.apply_gradients(grads), loss

    return tx, jax.jit(step)


def test_sparse_tables_are_the_ones_a_batch_cannot_cover(setup):
    _, model, batches = setup
    tables = {table.name: table for table in sparse_tables(model, batches(0))}
    # Even the context table (~40 countries, padded to 128 rows) outnumbers 1 + 64 ids.
    assert set(tables) == {
        "user_embedding",
        "item_embedding",
        "token_embedding",
        "context_embedding",
    }
    assert tables["item_embedding"].max_unique == 1 + 64 * 50 + 64 + 8  # PAD + ids


# Adagrad's step is smooth in the gradient, so the two paths agree to float tolerance.
# (Adam's one-step update is ±lr·sign(g) for any g, so rows whose gradient cancels to ~0
# flip with summation order; its row update is checked against optax in
# test_sparse_optimizer.py on exact gradients instead.)
@pytest.mark.parametrize(("name", "table_tx", "steps"), [("adagrad", optax.adagrad(TABLE_LR), 3)])
def test_sparse_steps_equal_dense_steps(setup, name, table_tx, steps):
    config, model, batches = setup
    tables = sparse_tables(model, batches(0))
    temperature = config.train.temperature
    rng = jax.random.PRNGKey(0)
    sparse_state = init_sparse_state(rng, model, batches(0), optax.adam(1e-3), tables, name)
    tx, dense_step = _dense_reference(model, tables, batches(0), temperature, table_tx)
    dense_state = TrainState.create(
        apply_fn=model.apply, params=sparse_state.params, tx=tx, rng=sparse_state.rng
    )
    sparse_step = jax.jit(
        make_sparse_train_step(
            model,
            tables,
            temperature=temperature,
            table_learning_rate=TABLE_LR,
            table_optimizer=name,
        )
    )
    for step in range(steps):
        batch = batches(step)
        sparse_state, metrics = sparse_step(sparse_state, batch)
        dense_state, dense_loss = dense_step(dense_state, batch)
        np.testing.assert_allclose(metrics["train/loss"], dense_loss, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
        sparse_state.params,
        dense_state.params,
    )
    _, table_params = split_params(sparse_state.params, tables)
    assert table_params["item_embedding"].shape == (model.num_items, config.model.embedding_dim)


def test_untouched_rows_keep_their_values(setup):
    config, model, batches = setup
    tables = sparse_tables(model, batches(0))
    state = init_sparse_state(jax.random.PRNGKey(0), model, batches(0), optax.adam(1e-3), tables)
    before = np.asarray(state.params["user_embedding"]["embedding"])
    step = jax.jit(
        make_sparse_train_step(
            model, tables, temperature=config.train.temperature, table_learning_rate=TABLE_LR
        )
    )
    batch = batches(0)
    state, _ = step(state, batch)
    after = np.asarray(state.params["user_embedding"]["embedding"])
    touched = np.unique(batch["user"])
    untouched = np.setdiff1d(np.arange(len(before)), touched)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    assert not np.allclose(after[touched], before[touched])


def test_loss_falls_with_rowwise_adagrad_tables(setup):
    config, model, batches = setup
    tables = sparse_tables(model, batches(0))
    state = init_sparse_state(
        jax.random.PRNGKey(0), model, batches(0), optax.adam(2e-3), tables, "rowwise_adagrad"
    )
    step = jax.jit(
        make_sparse_train_step(
            model,
            tables,
            temperature=config.train.temperature,
            table_learning_rate=TABLE_LR,
            table_optimizer="rowwise_adagrad",
        )
    )
    losses = []
    for index in range(40):
        state, metrics = step(state, batches(index))
        losses.append(float(metrics["train/loss"]))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
