"""Two-tower model invariants: masking, normalisation, padding never leaks into outputs."""

import jax
import jax.numpy as jnp
import numpy as np

from recjax.models.two_tower import TwoTower, TwoTowerConfig


def _model():
    return TwoTower(
        config=TwoTowerConfig(
            embedding_dim=8, hidden_dims=(16,), output_dim=4, recent_lengths=(2,)
        ),
        num_users=5,
        num_items=7,
        num_contexts=3,
        num_text_buckets=11,
    )


def _batch():
    return {
        "user": jnp.array([2, 3]),
        "history": jnp.array([[0, 0, 4, 5], [0, 0, 0, 0]]),
        "context": jnp.array([1, 2]),
        "item": jnp.array([3, 6]),
        "item_tokens": jnp.array([[1, 2, 0], [0, 0, 0]]),
    }


def test_towers_output_unit_vectors_and_no_nan_for_empty_history():
    model = _model()
    params = model.init(jax.random.PRNGKey(0), _batch())["params"]
    users, items = model.apply({"params": params}, _batch())
    assert np.isfinite(np.asarray(users)).all() and np.isfinite(np.asarray(items)).all()
    np.testing.assert_allclose(jnp.linalg.norm(users, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(items, axis=-1), 1.0, rtol=1e-5)


def test_padding_embedding_rows_do_not_change_the_user_vector():
    model = _model()
    params = model.init(jax.random.PRNGKey(0), _batch())["params"]
    before, _ = model.apply({"params": params}, _batch())
    table = params["item_embedding"]["embedding"]
    changed = jax.tree.map(lambda x: x, params)
    changed["item_embedding"]["embedding"] = table.at[0].set(100.0)
    after, _ = model.apply({"params": changed}, _batch())
    np.testing.assert_allclose(before, after, rtol=1e-6)


def test_recent_items_matter_more_than_their_mean_alone():
    """The recent pool sees the last `recent_length` items: reordering history changes it."""
    model = _model()
    params = model.init(jax.random.PRNGKey(0), _batch())["params"]
    a = dict(_batch(), history=jnp.array([[1, 2, 4, 5], [0, 0, 0, 0]]))
    b = dict(_batch(), history=jnp.array([[4, 5, 1, 2], [0, 0, 0, 0]]))
    users_a, _ = model.apply({"params": params}, a)
    users_b, _ = model.apply({"params": params}, b)
    assert not np.allclose(users_a[0], users_b[0])
    np.testing.assert_allclose(users_a[1], users_b[1])


def test_item_vectors_do_not_depend_on_the_rest_of_the_batch():
    model = _model()
    params = model.init(jax.random.PRNGKey(0), _batch())["params"]
    both = model.apply(
        {"params": params},
        jnp.array([3, 6]),
        jnp.array([[1, 2, 0], [0, 0, 0]]),
        method=TwoTower.encode_items,
    )
    one = model.apply(
        {"params": params}, jnp.array([3]), jnp.array([[1, 2, 0]]), method=TwoTower.encode_items
    )
    np.testing.assert_allclose(both[:1], one, rtol=1e-6)
