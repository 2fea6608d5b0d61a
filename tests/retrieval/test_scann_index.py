"""ScaNN index: small catalogues, adaptive tree sizes, recall against exact search."""

import time

import jax.numpy as jnp
import numpy as np
import pytest

from recjax.retrieval.exact import exact_top_k
from recjax.retrieval.scann_index import (
    ScannConfig,
    build_scann_index,
    measure_qps,
    recall_vs_exact,
)


def _clustered(num_points, rng, centers):
    """Points around random cluster centres: the structure real item embeddings have."""
    assignment = rng.integers(0, len(centers), size=num_points)
    noise = 0.5 * rng.normal(size=(num_points, centers.shape[1]))
    return (centers[assignment] + noise).astype(np.float32)


def _exact_indices(queries, items, k):
    return np.asarray(exact_top_k(jnp.asarray(queries), jnp.asarray(items), k)[1])


def test_tiny_catalogue_with_k_larger_than_it_is_exact():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 16)).astype(np.float32)
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    index = build_scann_index(items)

    indices, scores = index.search(queries, 100)

    assert index.describe()["algorithm"] == "brute_force" and index.num_items == 50
    assert indices.shape == scores.shape == (7, 50)
    np.testing.assert_array_equal(indices, _exact_indices(queries, items, 100))
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ items.T, indices, 1), rtol=1e-5, atol=1e-5
    )


@pytest.fixture(scope="module")
def clustered_catalogue():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(1000, 32)).astype(np.float32)
    return _clustered(20_000, rng, centers), _clustered(500, rng, centers)


def test_tree_recall_against_exact_on_a_clustered_catalogue(clustered_catalogue):
    items, queries = clustered_catalogue
    index = build_scann_index(items)
    narrow = build_scann_index(items, ScannConfig(leaves_to_search=1))

    described = index.describe()
    assert described["algorithm"] == "tree_ah"
    # sqrt(20,000) leaves; enough of them to cover min_points_searched=3,000 items (> 10%).
    assert (described["num_leaves"], described["leaves_to_search"]) == (141, 22)
    exact = _exact_indices(queries, items, 10)
    assert recall_vs_exact(index.search(queries, 10)[0], exact) >= 0.9
    # The check can fail: searching a single leaf loses many true neighbours.
    assert recall_vs_exact(narrow.search(queries, 10)[0], exact) < 0.8


def test_adaptive_leaves_to_search_is_ten_percent_on_large_catalogues():
    config = ScannConfig(min_points_searched=100)
    items = np.random.default_rng(3).normal(size=(10_000, 8)).astype(np.float32)
    assert build_scann_index(items, config).describe()["leaves_to_search"] == 10  # 10% of 100


@pytest.mark.parametrize(
    ("config", "want_leaves"),
    [
        (ScannConfig(brute_force_below=10), 39),  # round(sqrt(1500))
        (ScannConfig(brute_force_below=10, num_leaves=5000), 1500),  # at most one per point
        (ScannConfig(brute_force_below=10, num_leaves=500, training_sample_size=100), 100),
    ],
)
def test_never_more_leaves_than_points_and_never_padding(config, want_leaves):
    rng = np.random.default_rng(2)
    items = rng.normal(size=(1500, 8)).astype(np.float32)
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    index = build_scann_index(items, config)
    assert index.num_leaves == want_leaves

    # The searched leaves hold fewer than k items, which makes ScaNN pad its answer.
    indices, scores = index.search(queries, 2000)

    assert indices.shape == (4, 1500)
    assert not np.isnan(scores).any()
    for row in indices:
        np.testing.assert_array_equal(np.sort(row), np.arange(1500))
    assert (np.diff(scores, axis=1) <= 1e-5).all()


def test_recall_vs_exact_known_answer():
    approx = np.array([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[3, 2, 9], [7, 8, 9]])
    np.testing.assert_allclose(recall_vs_exact(approx, exact), (2 / 3 + 0) / 2)


def test_measure_qps_warms_up_and_takes_the_best_run():
    calls = []

    def search(queries):
        calls.append(len(queries))
        time.sleep(0.01)
        return jnp.zeros(len(queries))

    qps = measure_qps(search, np.zeros((5, 2)), repeats=2)
    assert calls == [5, 5, 5]
    assert 0 < qps <= 5 / 0.01
