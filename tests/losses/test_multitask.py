import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.losses.multitask import TaskSpec, masked_mean, multitask_loss, task_loss

BINARY = TaskSpec(name="click", kind="binary")
REGRESSION = TaskSpec(name="dwell", kind="regression")


def test_masked_bce_known_value():
    logits, labels = jnp.array([0.0, 2.0, 5.0]), jnp.array([1.0, 0.0, 1.0])
    mask = jnp.array([True, True, False])
    expected = (np.log(2.0) + np.log1p(np.exp(2.0))) / 2
    np.testing.assert_allclose(task_loss(BINARY, logits, labels, mask), expected, rtol=1e-6)


def test_mse_and_huber_known_values():
    predictions, targets = jnp.array([1.0, 4.0]), jnp.array([0.0, 0.0])
    mask = jnp.ones(2, bool)
    np.testing.assert_allclose(task_loss(REGRESSION, predictions, targets, mask), 8.5)
    huber = TaskSpec(name="dwell", kind="regression", regression_loss="huber", huber_delta=1.0)
    # 0.5·1² for |x| = 1 ≤ δ; δ·(|x| - δ/2) = 3.5 for |x| = 4.
    np.testing.assert_allclose(task_loss(huber, predictions, targets, mask), (0.5 + 3.5) / 2)


def test_missing_label_changes_neither_loss_nor_gradient():
    tasks = (BINARY, REGRESSION)
    outputs = {"click": jnp.array([0.3, -1.0, 2.0]), "dwell": jnp.array([1.0, 2.0, 3.0])}
    masks = {"click": jnp.array([True, True, True]), "dwell": jnp.array([True, False, True])}
    labels_a = {"click": jnp.array([1.0, 0.0, 1.0]), "dwell": jnp.array([1.5, 0.0, 2.0])}
    # The missing dwell label is garbage (even NaN): nothing may change.
    labels_b = {"click": labels_a["click"], "dwell": jnp.array([1.5, jnp.nan, 2.0])}

    def loss(outputs, labels):
        return multitask_loss(tasks, outputs, labels, masks)[0]

    np.testing.assert_allclose(loss(outputs, labels_a), loss(outputs, labels_b))
    grads = jax.grad(loss)(outputs, labels_b)
    assert grads["dwell"][1] == 0.0
    assert np.isfinite(np.asarray(grads["dwell"])).all()
    # A masked example is left out of the mean, not counted as a zero-loss example.
    np.testing.assert_allclose(
        multitask_loss(tasks, outputs, labels_a, masks)[1]["dwell"], (0.5**2 + 1.0**2) / 2
    )


def test_total_is_the_weighted_sum():
    tasks = (
        TaskSpec(name="click", kind="binary", weight=2.0),
        TaskSpec(name="dwell", kind="regression", weight=0.5),
    )
    outputs = {"click": jnp.array([0.0, 1.0]), "dwell": jnp.array([1.0, 3.0])}
    labels = {"click": jnp.array([1.0, 1.0]), "dwell": jnp.array([0.0, 0.0])}
    masks = {name: jnp.ones(2, bool) for name in outputs}
    total, per_task = multitask_loss(tasks, outputs, labels, masks)
    np.testing.assert_allclose(per_task["dwell"], 5.0)
    np.testing.assert_allclose(total, 2.0 * per_task["click"] + 0.5 * 5.0, rtol=1e-6)


def test_fully_masked_task_is_zero_with_zero_gradient():
    mask = jnp.zeros(2, bool)
    value, grad = jax.value_and_grad(lambda x: task_loss(BINARY, x, jnp.ones(2), mask))(
        jnp.array([1.0, 2.0])
    )
    assert value == 0.0
    np.testing.assert_array_equal(grad, 0.0)
    assert masked_mean(jnp.array([jnp.nan]), jnp.array([False])) == 0.0


def test_task_spec_rejects_bad_settings():
    with pytest.raises(ValueError, match="kind"):
        TaskSpec(name="x", kind="ordinal")
    with pytest.raises(ValueError, match="weight"):
        TaskSpec(name="x", kind="binary", weight=-1.0)
