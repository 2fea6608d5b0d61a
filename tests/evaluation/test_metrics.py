"""Known-answer tests for recjax.evaluation.metrics."""

import math

import numpy as np
import pytest

from recjax.evaluation.metrics import metrics_from_ranks


def test_known_answers_several_targets_padding_and_empty_users():
    ranks = np.array(
        [
            [0, -1],  # One target at the top.
            [4, 12],  # Two targets.
            [-1, -1],  # No target: ignored.
            [25, -1],  # One target past every cut-off.
        ]
    )
    got = metrics_from_ranks(ranks, ks=(1, 5, 20))

    ideal_two = 1 + 1 / math.log2(3)  # Two targets at ranks 0 and 1.
    expected = {
        "recall@1": (1 + 0 + 0) / 3,
        "recall@5": (1 + 0.5 + 0) / 3,
        "recall@20": (1 + 1 + 0) / 3,
        "hr@1": (1 + 0 + 0) / 3,
        "hr@5": (1 + 1 + 0) / 3,
        "hr@20": (1 + 1 + 0) / 3,
        # NDCG@1 of user 1: IDCG@1 = 1 (one slot), no hit.
        "ndcg@1": (1 + 0 + 0) / 3,
        "ndcg@5": (1 + (1 / math.log2(6)) / ideal_two + 0) / 3,
        "ndcg@20": (1 + (1 / math.log2(6) + 1 / math.log2(14)) / ideal_two + 0) / 3,
        "mrr": (1 + 1 / 5 + 1 / 26) / 3,
        "num_users": 3,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)


def test_cut_off_is_exclusive():
    got = metrics_from_ranks(np.array([[9], [10]]), ks=(10,))
    assert got["recall@10"] == 0.5
    assert got["hr@10"] == 0.5
    np.testing.assert_allclose(got["ndcg@10"], (1 / math.log2(11)) / 2)


def test_ideal_dcg_is_capped_at_k():
    # Three targets, K = 2: the best possible DCG@2 fills only two slots.
    got = metrics_from_ranks(np.array([[0, 1, 2]]), ks=(2,))
    assert got["ndcg@2"] == 1.0
    np.testing.assert_allclose(got["recall@2"], 2 / 3)


def test_default_keys():
    got = metrics_from_ranks(np.array([[3]]))
    assert set(got) == {f"{m}@{k}" for m in ("recall", "hr", "ndcg") for k in (10, 20, 50, 100)} | {
        "mrr",
        "num_users",
    }


@pytest.mark.parametrize("ranks", [np.full((3, 2), -1), np.zeros((0, 1), dtype=int)])
def test_no_targets_raises(ranks):
    with pytest.raises(ValueError, match="No user has a target"):
        metrics_from_ranks(ranks)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match=r"\[U, T\]"):
        metrics_from_ranks(np.array([1, 2]))
