"""Next-item losses: known answers, masked candidates, padding that changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np

from recjax.losses.next_item import full_softmax_loss, sampled_next_item_loss


def _random(shape, seed):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_full_softmax_known_answer_with_non_items_masked():
    hidden = jnp.asarray([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    items = jnp.asarray([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [7.0, 7.0]])
    targets = jnp.asarray([1, 3, 2])
    weights = jnp.asarray([1.0, 1.0, 0.0])  # the third position is padding
    loss = full_softmax_loss(hidden, items, targets, weights, first_item=1, end_item=4)
    # Candidates are rows 1..3 only (row 0 = padding, row 4 = table padding).
    logits = np.asarray(hidden[:2] @ items[1:4].T)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(log_softmax[0, 0] + log_softmax[1, 2]) / 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


def test_sampled_softmax_padding_positions_change_nothing():
    hidden, items = _random((6, 8), 0), _random((20, 8), 1)
    targets = jnp.asarray([3, 4, 5, 6, 0, 0])
    log_q = jnp.asarray([-1.0, -2.0, -1.5, -0.5, 0.0, 0.0])
    weights = jnp.asarray([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    negatives, negative_log_q = jnp.asarray([7, 8, 3]), jnp.full(3, -3.0)
    padded = sampled_next_item_loss(
        hidden, items, targets, log_q, weights, negatives, negative_log_q
    )
    real = sampled_next_item_loss(
        hidden[:4], items, targets[:4], log_q[:4], weights[:4], negatives, negative_log_q
    )
    np.testing.assert_allclose(float(padded), float(real), rtol=1e-6)
    assert np.isfinite(float(padded))


def test_sampled_softmax_known_answer():
    """Two positions, no extra negatives: each target against the other, logQ subtracted."""
    hidden = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    items = jnp.asarray([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    targets, log_q = jnp.asarray([1, 2]), jnp.asarray([0.5, -0.5])
    loss = sampled_next_item_loss(hidden, items, targets, log_q, jnp.ones(2))
    logits = np.asarray(hidden @ items[1:].T) - np.asarray(log_q)[None, :]
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(float(loss), -(log_softmax[0, 0] + log_softmax[1, 1]) / 2, rtol=1e-6)
