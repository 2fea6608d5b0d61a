"""exact_top_k against a numpy argsort reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from recjax.retrieval.exact import candidate_mask, exact_top_k


def _reference(queries, items, k, excluded):
    scores = queries.astype(np.float64) @ items.T.astype(np.float64)
    if excluded is not None:
        for q, row in enumerate(excluded):
            scores[q, row[row >= 0]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, items.shape[0])]
    top = np.take_along_axis(scores, order, axis=1)
    return top, np.where(np.isfinite(top), order, -1)


@pytest.mark.parametrize(("k", "query_chunk"), [(5, 4), (40, 3), (7, 1024)])
def test_matches_argsort_reference_with_exclusions(k, query_chunk):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(10, 8)).astype(np.float32)
    items = rng.normal(size=(30, 8)).astype(np.float32)
    excluded = rng.integers(-1, 30, size=(10, 6)).astype(np.int32)

    scores, indices = exact_top_k(
        jnp.asarray(queries),
        jnp.asarray(items),
        k,
        excluded=jnp.asarray(excluded),
        query_chunk=query_chunk,
    )

    want_scores, want_indices = _reference(queries, items, k, excluded)
    assert indices.shape == (10, min(k, 30)) and indices.dtype == jnp.int32
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    for row, removed in zip(np.asarray(indices), excluded, strict=True):
        assert not set(row) & set(removed[removed >= 0])


def test_without_exclusions_k_larger_than_catalogue_returns_everything_sorted():
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(3, 4)).astype(np.float32)
    items = rng.normal(size=(6, 4)).astype(np.float32)
    scores, indices = exact_top_k(jnp.asarray(queries), jnp.asarray(items), 100)
    want_scores, want_indices = _reference(queries, items, 100, None)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_fewer_candidates_than_k_leave_minus_one_slots():
    queries = jnp.ones((1, 2))
    items = jnp.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    scores, indices = exact_top_k(queries, items, 3, excluded=jnp.array([[2, 0]]))
    np.testing.assert_array_equal(indices, [[1, -1, -1]])
    np.testing.assert_array_equal(scores, [[2.0, -np.inf, -np.inf]])


def test_candidate_mask():
    mask = candidate_mask(jnp.array([[0, -1], [2, 2]]), num_items=3, batch=2)
    np.testing.assert_array_equal(mask, [[False, True, True], [True, True, False]])
    assert candidate_mask(None, num_items=2, batch=1).all()
