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


@pytest.mark.parametrize("num_rows, shape", [(1_000, (64, 20)), (3, (5, 4)), (10**7, (1, 1))])
def test_unique_rows_equals_jnp_unique(num_rows, shape):
    ids = jnp.asarray(np.random.default_rng(num_rows).integers(0, num_rows, size=shape), jnp.int32)
    size = ids.size
    expected = jnp.unique(ids.ravel(), size=size, fill_value=num_rows, return_inverse=True)
    row_ids, local = jax.jit(sparse.unique_rows, static_argnames=("size", "num_rows"))(
        ids, size=size, num_rows=num_rows
    )
    np.testing.assert_array_equal(row_ids, expected[0])
    np.testing.assert_array_equal(local, expected[1].reshape(shape))


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


def test_rowwise_adagrad_known_answer_by_hand():
    # 4 rows × 2 dims; the step touches rows 2 and 0 (ids unique, padded with V=4).
    table = jnp.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    state = sparse.init_rowwise_adagrad(table)
    row_ids = jnp.asarray([2, 0, 4, 4])
    grad_rows = jnp.asarray([[1.0, 7.0], [3.0, 4.0], [9.0, 9.0], [9.0, 9.0]])
    table, state = sparse.rowwise_adagrad_rows_update(
        table, state, row_ids, grad_rows, learning_rate=0.1, eps=0.0
    )
    # Row 2: s = (1² + 7²)/2 = 25, step 0.1/√25 = 0.02 → [5 - 0.02, 6 - 0.14].
    # Row 0: s = (3² + 4²)/2 = 12.5, step 0.1/√12.5 → [1 - 0.3/√12.5, 2 - 0.4/√12.5].
    # Padded slots' (non-zero) gradients are dropped.
    r = np.sqrt(12.5)
    np.testing.assert_allclose(
        table, [[1 - 0.3 / r, 2 - 0.4 / r], [3, 4], [4.98, 5.86], [7, 8]], rtol=1e-6
    )
    np.testing.assert_allclose(state.sum_of_squares, [12.5, 0.0, 25.0, 0.0], rtol=1e-6)
    # A second step on row 2 adds to its accumulator: s = 25 + (4² + 2²)/2 = 35.
    table, state = sparse.rowwise_adagrad_rows_update(
        table,
        state,
        jnp.asarray([2, 4]),
        jnp.asarray([[4.0, 2.0], [0.0, 0.0]]),
        learning_rate=0.1,
        eps=0.0,
    )
    np.testing.assert_allclose(
        table[2], [4.98 - 0.4 / np.sqrt(35), 5.86 - 0.2 / np.sqrt(35)], rtol=1e-6
    )
    np.testing.assert_allclose(state.sum_of_squares, [12.5, 0.0, 35.0, 0.0], rtol=1e-6)


def test_rowwise_adagrad_state_is_one_float_per_row():
    table = jnp.zeros((V, D), jnp.bfloat16)
    state = sparse.init_rowwise_adagrad(table, initial_accumulator_value=0.1)
    assert state.sum_of_squares.shape == (V,)
    assert state.sum_of_squares.dtype == jnp.float32
    np.testing.assert_allclose(state.sum_of_squares, 0.1)


def test_rowwise_adagrad_leaves_untouched_rows_and_their_state():
    table, ids, weights = _problem()
    state = sparse.init_rowwise_adagrad(table, initial_accumulator_value=0.1)
    for step in range(3):
        row_ids, grad_rows = _row_grad(table, ids, weights)
        new_table, state = sparse.rowwise_adagrad_rows_update(
            table, state, row_ids, grad_rows, learning_rate=0.1
        )
        assert step or not np.allclose(new_table, table)  # it moves something
        table = new_table
    touched = np.unique(np.asarray(ids))
    untouched = np.setdiff1d(np.arange(V), touched)
    original, _, _ = _problem()
    np.testing.assert_array_equal(table[untouched], original[untouched])
    np.testing.assert_array_equal(state.sum_of_squares[untouched], np.float32(0.1))
    assert np.all(np.asarray(state.sum_of_squares[touched]) > 0.1)
    assert not np.allclose(table[touched], original[touched])


@pytest.mark.parametrize("steps", [1, 3])
def test_rowwise_adagrad_with_one_dim_is_optax_adagrad(steps):
    # With D == 1 a row's mean squared gradient is its squared gradient: plain Adagrad
    # (up to where eps sits, negligible here).
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(V, 1)), jnp.float32)
    ids = jnp.asarray([[3, 7, 3], [40, 7, 0]], jnp.int32)
    weights = jnp.asarray(rng.normal(size=(2, 3, 1)), jnp.float32)
    tx = optax.adagrad(0.1, eps=0.0)
    dense_table, dense_state = table, tx.init(table)
    sparse_table, sparse_state = table, sparse.init_rowwise_adagrad(table, 0.1)
    for step in range(steps):
        step_ids = (ids + step) % V
        updates, dense_state = tx.update(_dense_grad(dense_table, step_ids, weights), dense_state)
        dense_table = optax.apply_updates(dense_table, updates)
        row_ids, grad_rows = _row_grad(sparse_table, step_ids, weights)
        sparse_table, sparse_state = sparse.rowwise_adagrad_rows_update(
            sparse_table, sparse_state, row_ids, grad_rows, learning_rate=0.1, eps=0.0
        )
    np.testing.assert_allclose(sparse_table, dense_table, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sparse_state.sum_of_squares, dense_state[0].sum_of_squares[:, 0])
