"""Known-answer and reference tests for recjax.evaluation.full_ranking."""

import jax.numpy as jnp
import numpy as np

from recjax.evaluation.full_ranking import evaluate_full_ranking, target_ranks
from recjax.evaluation.metrics import metrics_from_ranks


def _reference_ranks(scores, targets, excluded):
    """Loop version of the documented rule."""
    num_items = scores.shape[1]
    ranks = np.full(targets.shape, -1)
    for b, t in np.ndindex(targets.shape):
        target = targets[b, t]
        if target < 0:
            continue
        removed = set(excluded[b][excluded[b] >= 0]) if excluded is not None else set()
        if target in removed:
            ranks[b, t] = num_items
            continue
        ranks[b, t] = sum(
            scores[b, j] >= scores[b, target]
            for j in range(num_items)
            if j != target and j not in removed
        )
    return ranks


def test_ties_count_against_the_target_and_padding_is_minus_one():
    scores = jnp.array([[0.1, 0.5, 0.3, 0.5, 0.2]])
    ranks = target_ranks(scores, jnp.array([[1, 2, -1]], dtype=jnp.int32), None)
    # Item 1 ties with item 3 (rank 1, not 0); item 2 is beaten by items 1 and 3.
    np.testing.assert_array_equal(ranks, [[1, 2, -1]])
    assert ranks.dtype == jnp.int32


def test_constant_scorer_gets_no_credit():
    ranks = target_ranks(jnp.zeros((2, 5)), jnp.array([[0], [4]], dtype=jnp.int32), None)
    np.testing.assert_array_equal(ranks, [[4], [4]])


def test_excluded_items_leave_the_candidates_and_an_excluded_target_is_a_miss():
    scores = jnp.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6]])
    targets = jnp.array([[2, 0], [3, -1]], dtype=jnp.int32)
    excluded = jnp.array([[0, -1], [1, 0]], dtype=jnp.int32)
    ranks = target_ranks(scores, targets, excluded)
    # Row 0: item 0 is excluded, so target 2 is beaten only by item 1; target 0 misses (N).
    # Row 1: items 0 and 1 excluded, so target 3 is beaten only by item 2.
    np.testing.assert_array_equal(ranks, [[1, 4], [1, -1]])


def test_matches_reference_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(6, 12)).astype(np.float32)  # Many ties.
    targets = rng.integers(-1, 12, size=(6, 3)).astype(np.int32)
    excluded = rng.integers(-1, 12, size=(6, 4)).astype(np.int32)
    np.testing.assert_array_equal(
        target_ranks(jnp.asarray(scores), jnp.asarray(targets), jnp.asarray(excluded)),
        _reference_ranks(scores, targets, excluded),
    )


def test_evaluate_popularity_known_answer():
    popularity = jnp.array([3.0, 2.0, 1.0, 0.0])
    targets = np.array([[0], [1], [3], [0], [-1]])
    excluded = np.array(
        [
            [-1, -1],
            [0, -1],  # Item 0 removed: target 1 comes first.
            [-1, -1],
            [0, 2],  # The target itself is excluded: a miss (rank N = 4).
            [1, 2],  # No target: ignored.
        ]
    )
    got = evaluate_full_ranking(
        lambda rows: jnp.broadcast_to(popularity, (len(rows), 4)),
        targets,
        excluded,
        ks=(1, 2),
        batch_size=2,
    )
    assert got["num_users"] == 4
    np.testing.assert_allclose(got["recall@1"], 0.5)
    np.testing.assert_allclose(got["hr@2"], 0.5)
    np.testing.assert_allclose(got["mrr"], (1 + 1 + 1 / 4 + 1 / 5) / 4)


def test_evaluate_pads_batches_to_one_shape_and_matches_direct_ranking():
    rng = np.random.default_rng(1)
    num_users, num_items = 11, 30
    all_scores = rng.normal(size=(num_users, num_items)).astype(np.float32)
    targets = rng.integers(-1, num_items, size=(num_users, 2))
    excluded = rng.integers(-1, num_items, size=(num_users, 5))
    seen_rows = []

    def score_fn(rows):
        seen_rows.append(rows)
        return jnp.asarray(all_scores[rows])

    got = evaluate_full_ranking(
        score_fn, targets, excluded, ks=(5, 10), batch_size=4, progress=True
    )

    assert [len(rows) for rows in seen_rows] == [4, 4, 4]
    np.testing.assert_array_equal(np.unique(np.concatenate(seen_rows)), np.arange(num_users))
    expected = metrics_from_ranks(_reference_ranks(all_scores, targets, excluded), ks=(5, 10))
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, err_msg=key)


def test_evaluate_without_exclusions_and_fewer_users_than_a_batch():
    # A perfect scorer: each user's single target scores highest.
    targets = np.array([[2], [0], [1]])
    scores = np.eye(3, dtype=np.float32)[targets[:, 0]]
    got = evaluate_full_ranking(lambda rows: jnp.asarray(scores[rows]), targets, None, ks=(1,))
    assert got == {"recall@1": 1.0, "hr@1": 1.0, "ndcg@1": 1.0, "mrr": 1.0, "num_users": 3}
