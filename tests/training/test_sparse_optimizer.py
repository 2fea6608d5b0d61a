"""Row-sparse updates equal the dense optax optimizers on touched rows, and leave the rest."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recjax.training import sparse_optimizer as sparse

V, D = 50, 4


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    table = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    ids = jnp.asarray([[3, 7, 3], [40, 7, 0]], jnp.int32)  # repeats: gradients must add up
    weights = jnp.asarray(rng.normal(size=(2, 3, D)), jnp.float32)
    return table, ids, weights


def _loss(rows_looked_up, weights):
    return jnp.sum(jnp.tanh(rows_looked_up) * weights)


def _dense_grad(table, ids, weights):
    return jax.grad(lambda t: _loss(t[ids], weights))(table)


def _row_grad(table, ids, weights, size=8):
    row_ids, local = sparse.unique_rows(ids, size=size, num_rows=V)
    rows = sparse.gather_rows(table, row_ids)
    return row_ids, jax.grad(lambda r: _loss(r[local], weights))(rows)


def test_unique_rows_round_trips_and_pads():
    ids = jnp.asarray([[5, 2, 5], [9, 2, 2]])
    row_ids, local = sparse.unique_rows(ids, size=6, num_rows=V)
    np.testing.assert_array_equal(row_ids, [2, 5, 9, V, V, V])
    np.testing.assert_array_equal(row_ids[local], ids)


def test_row_gradient_equals_the_dense_gradient_rows():
    table, ids, weights = _problem()
    row_ids, grad_rows = _row_grad(table, ids, weights)
    dense = _dense_grad(table, ids, weights)
    touched = row_ids[row_ids < V]
    np.testing.assert_allclose(grad_rows[: len(touched)], dense[touched], rtol=1e-6)
    np.testing.assert_array_equal(grad_rows[len(touched) :], 0.0)


@pytest.mark.parametrize("steps", [1, 3])
def test_adagrad_equals_optax_adagrad_everywhere(steps):
    table, ids, weights = _problem()
    tx = optax.adagrad(0.1)
    dense_table, dense_state = table, tx.init(table)
    sparse_table, sparse_state = table, sparse.init_adagrad(table)
    for step in range(steps):
        step_ids = (ids + step) % V
        updates, dense_state = tx.update(_dense_grad(dense_table, step_ids, weights), dense_state)
        dense_table = optax.apply_updates(dense_table, updates)
        row_ids, grad_rows = _row_grad(sparse_table, step_ids, weights)
        sparse_table, sparse_state = sparse.adagrad_rows_update(
            sparse_table, sparse_state, row_ids, grad_rows, learning_rate=0.1
        )
    # Untouched rows: zero gradient, so dense Adagrad leaves them alone too.
    np.testing.assert_allclose(sparse_table, dense_table, rtol=1e-6, atol=1e-7)


def test_adam_equals_optax_adam_on_touched_rows_and_leaves_the_rest():
    table, ids, weights = _problem()
    tx = optax.adam(0.01)
    dense_state = tx.init(table)
    updates, dense_state = tx.update(_dense_grad(table, ids, weights), dense_state)
    dense_table = optax.apply_updates(table, updates)
    row_ids, grad_rows = _row_grad(table, ids, weights)
    sparse_table, state = sparse.adam_rows_update(
        table, sparse.init_adam(table), row_ids, grad_rows, learning_rate=0.01
    )
    touched = np.unique(np.asarray(ids))
    np.testing.assert_allclose(sparse_table[touched], dense_table[touched], rtol=1e-6)
    untouched = np.setdiff1d(np.arange(V), touched)
    np.testing.assert_array_equal(sparse_table[untouched], table[untouched])
    np.testing.assert_allclose(state.mu[touched], dense_state[0].mu[touched], rtol=1e-6)
    assert int(state.count) == 1


def test_update_compiles_once_per_shape():
    table, ids, weights = _problem()
    traces = []

    def step(t, s, r, g):
        traces.append(1)  # runs only while jax traces (compiles)
        return sparse.adagrad_rows_update(t, s, r, g, learning_rate=0.1)

    update = jax.jit(step)
    state = sparse.init_adagrad(table)
    for seed in range(3):
        row_ids, grad_rows = _row_grad(table, (ids + seed) % V, weights)
        table, state = update(table, state, row_ids, grad_rows)
    assert len(traces) == 1
