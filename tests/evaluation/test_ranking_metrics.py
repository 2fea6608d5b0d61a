import numpy as np

from recjax.evaluation.ranking_metrics import auc, calibration, log_loss, rmse, task_metrics
from recjax.losses.multitask import TaskSpec


def test_auc_counts_ties_as_half():
    # Positive-negative pairs: (.5,.1)=1, (.5,.5)=1/2, (.9,.1)=1, (.9,.5)=1 -> 3.5 / 4.
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    labels = np.array([0, 1, 0, 1])
    assert auc(scores, labels) == 0.875
    assert auc(np.zeros(6), np.array([0, 1, 0, 1, 1, 0])) == 0.5
    assert auc(np.array([3.0, 2.0, 1.0]), np.array([1, 1, 0])) == 1.0


def test_auc_matches_pairwise_count_and_respects_mask():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # Many ties.
    labels = rng.integers(0, 2, 200)
    mask = rng.random(200) < 0.7
    s, y = scores[mask], labels[mask]
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    expected = ((pos > neg) + 0.5 * (pos == neg)).mean()
    np.testing.assert_allclose(auc(scores, labels, mask), expected, rtol=1e-12)
    assert np.isnan(auc(scores, np.ones(200)))


def test_calibration_buckets_and_ece():
    probs = np.array([0.05, 0.15, 0.15, 0.95, 0.5])
    labels = np.array([0, 1, 0, 1, 1])
    mask = np.array([True, True, True, True, False])
    result = calibration(probs, labels, mask, num_buckets=10)
    np.testing.assert_array_equal(result["count"], [1, 2, 0, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(result["predicted"][[0, 1, 9]], [0.05, 0.15, 0.95])
    np.testing.assert_allclose(result["observed"][[0, 1, 9]], [0.0, 0.5, 1.0])
    assert np.isnan(result["observed"][5])
    np.testing.assert_allclose(result["ece"], (0.05 + 2 * 0.35 + 0.05) / 4)
    assert calibration(np.array([1.0]), np.array([1]), num_buckets=4)["count"][3] == 1


def test_log_loss_and_rmse_known_values():
    np.testing.assert_allclose(
        log_loss(np.array([0.5, 0.8, 0.3]), np.array([1, 1, 0]), np.array([1, 1, 0], bool)),
        -(np.log(0.5) + np.log(0.8)) / 2,
    )
    np.testing.assert_allclose(
        rmse(np.array([1.0, 2.0, 9.0]), np.array([0.0, 4.0, 0.0]), np.array([1, 1, 0], bool)),
        np.sqrt(2.5),
    )


def test_task_metrics_per_head():
    tasks = (TaskSpec(name="click", kind="binary"), TaskSpec(name="dwell", kind="regression"))
    outputs = {"click": np.array([-2.0, 2.0, 0.0]), "dwell": np.array([1.0, 2.0, 3.0])}
    labels = {"click": np.array([0.0, 1.0, 1.0]), "dwell": np.array([1.0, 4.0, 0.0])}
    masks = {"click": np.array([True, True, False]), "dwell": np.array([True, True, False])}
    metrics = task_metrics(tasks, outputs, labels, masks)
    assert metrics["click/auc"] == 1.0
    assert metrics["click/count"] == 2
    np.testing.assert_allclose(metrics["click/positive_rate"], 0.5)
    np.testing.assert_allclose(metrics["dwell/rmse"], np.sqrt(2.0))
    np.testing.assert_allclose(metrics["dwell/rmse_constant"], 1.5)
