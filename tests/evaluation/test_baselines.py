"""Known-answer tests for recjax.evaluation.baselines."""

import numpy as np
import pytest

from recjax.evaluation.baselines import Cooccurrence, fit_cooccurrence, popularity_scores


def test_popularity_counts_every_index():
    scores = popularity_scores(np.array([2, 0, 2, 3]), num_items=5)
    np.testing.assert_array_equal(scores, [1, 0, 2, 1, 0])
    assert scores.dtype == np.float32


def test_popularity_rejects_out_of_range_items():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        popularity_scores(np.array([0, 3]), num_items=3)


# Users: [0, 1, 2], [2, 0], [3] (a single event), [] (no history), [1, 1]. Item 4 unseen.
OFFSETS = np.array([0, 3, 5, 6, 6, 8])
ITEMS = np.array([0, 1, 2, 2, 0, 3, 1, 1])


def _dense(model: Cooccurrence) -> np.ndarray:
    return model.matrix.toarray()


def test_window_one_counts_neighbours_in_both_directions_within_users_only():
    model = fit_cooccurrence(OFFSETS, ITEMS, num_items=5, window=1)
    expected = np.zeros((5, 5))
    for i, j in [(0, 1), (1, 2), (2, 0)]:  # (1, 1) is a repeat, not a pair.
        expected[i, j] += 1
        expected[j, i] += 1
    # Neighbours across users (0 then 3, 3 then 1) must not count.
    np.testing.assert_array_equal(_dense(model), expected)
    assert model.num_items == 5


def test_window_two_adds_the_pairs_two_apart():
    model = fit_cooccurrence(OFFSETS, ITEMS, num_items=5, window=2)
    expected = np.zeros((5, 5))
    for i, j in [(0, 1), (1, 2), (2, 0), (0, 2)]:
        expected[i, j] += 1
        expected[j, i] += 1
    np.testing.assert_array_equal(_dense(model), expected)


def test_scores_are_rows_and_no_history_scores_zero():
    model = fit_cooccurrence(OFFSETS, ITEMS, num_items=5, window=2)
    scores = model.scores(np.array([0, -1, 3, 2]))
    np.testing.assert_array_equal(
        scores, [[0, 1, 2, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [2, 1, 0, 0, 0]]
    )
    assert scores.dtype == np.float32
    assert model.scores(np.array([], dtype=int)).shape == (0, 5)


def test_matches_a_loop_over_events():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 8, size=20)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(0, 10, size=offsets[-1])
    expected = np.zeros((10, 10))
    for user in range(20):
        sequence = items[offsets[user] : offsets[user + 1]]
        for p in range(len(sequence)):
            for q in range(p + 1, min(p + 4, len(sequence))):
                if sequence[p] != sequence[q]:
                    expected[sequence[p], sequence[q]] += 1
                    expected[sequence[q], sequence[p]] += 1
    np.testing.assert_array_equal(
        _dense(fit_cooccurrence(offsets, items, num_items=10, window=3)), expected
    )


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="window"):
        fit_cooccurrence(OFFSETS, ITEMS, num_items=5, window=0)
    with pytest.raises(ValueError, match="offsets"):
        fit_cooccurrence(OFFSETS[:-1], ITEMS, num_items=5, window=1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fit_cooccurrence(OFFSETS, ITEMS, num_items=3, window=1)
