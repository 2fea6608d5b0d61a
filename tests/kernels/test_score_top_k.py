"""Every score + top-k implementation against the reference (Pallas interpreted on CPU)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax_kernels.score_top_k import api, blocked, pallas, reference
from recjax_kernels.score_top_k.specs import CASES, DTYPES

# Small tiles, so every case spans several blocks, chunks and query blocks.
IMPLEMENTATIONS = {
    "blocked": functools.partial(blocked.score_top_k, block_items=64),
    "pallas": functools.partial(
        pallas.score_top_k, block_items=16, blocks_per_program=2, interpret=True
    ),
    "api": lambda queries, items, k, excluded: api.score_top_k(
        queries, items, k, excluded=excluded
    ),
}


def _true_scores(queries, items, indices):
    """float64 score of each returned index (nan at empty slots)."""
    scores_qn = np.asarray(queries, np.float64) @ np.asarray(items, np.float64).T
    found = np.take_along_axis(scores_qn, np.maximum(indices, 0), axis=1)
    return np.where(indices >= 0, found, np.nan)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_matches_reference(name, case, dtype, assert_close):
    queries, items, excluded = case.inputs(dtype)
    want_scores, want_indices = reference.score_top_k(queries, items, case.k, excluded)

    scores, indices = IMPLEMENTATIONS[name](queries, items, case.k, excluded)

    assert scores.shape == indices.shape == (case.num_queries, case.k)
    assert scores.dtype == jnp.float32 and indices.dtype == jnp.int32
    assert_close(scores, want_scores, dtype)
    indices = np.asarray(indices)
    np.testing.assert_array_equal(indices == -1, np.asarray(scores) == -np.inf)
    # Each index really has its score; near-equal scores may come in either order.
    assert_close(
        _true_scores(queries, items, indices), np.where(indices >= 0, scores, np.nan), dtype
    )
    for row, removed in zip(
        indices, np.asarray(excluded if excluded is not None else []), strict=False
    ):
        assert not set(row[row >= 0]) & set(removed), "an excluded item was returned"
    for row in indices:
        assert len(set(row[row >= 0])) == (row >= 0).sum(), "an item was returned twice"
    if case.ties:  # Exact arithmetic: the tie order (ascending id) must match exactly.
        np.testing.assert_array_equal(indices, want_indices)


def test_reference_known_answer_ties_exclusions_and_empty_slots():
    queries = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    items = jnp.array([[2.0, 0.0], [1.0, 5.0], [2.0, 1.0], [0.0, 5.0]])
    excluded = jnp.array([[2, -1], [1, 7]], dtype=jnp.int32)  # 7 is out of range: ignored.
    scores, indices = reference.score_top_k(queries, items, 6, excluded)
    # Query 0: items 0 and 2 tie at 2 but 2 is excluded; 1 and 3 score 1 and 0.
    # Query 1: items 1 and 3 tie at 5, 1 is excluded; then 2 (1) and 0 (0).
    np.testing.assert_array_equal(indices, [[0, 1, 3, -1, -1, -1], [3, 2, 0, -1, -1, -1]])
    np.testing.assert_array_equal(scores[:, :3], [[2.0, 1.0, 0.0], [5.0, 1.0, 0.0]])
    assert np.all(np.asarray(scores[:, 3:]) == -np.inf)


def test_ties_come_in_ascending_id_across_blocks_and_chunks():
    # A zero query ties every item, at +0.0 or -0.0 (which top_k alone would order apart).
    queries = jnp.zeros((3, 16))
    items = jnp.asarray(np.random.default_rng(0).normal(size=(100, 16)), jnp.float32)
    implementations = {"reference": reference.score_top_k, **IMPLEMENTATIONS}
    for name, implementation in implementations.items():
        scores, indices = implementation(queries, items, 20, None)
        np.testing.assert_array_equal(
            indices, np.broadcast_to(np.arange(20), (3, 20)), err_msg=name
        )
        assert not np.signbit(scores).any(), name


def test_all_seen_rows_are_empty_and_others_are_not():
    queries = jnp.ones((2, 16))
    items = jnp.arange(32.0).reshape(2, 16).repeat(10, axis=0)  # 20 items
    excluded = jnp.array([list(range(20)), [-1] * 20], dtype=jnp.int32)
    for name, implementation in IMPLEMENTATIONS.items():
        scores, indices = implementation(queries, items, 4, excluded)
        np.testing.assert_array_equal(indices[0], [-1] * 4, err_msg=name)
        assert np.all(np.asarray(scores[0]) == -np.inf), name
        np.testing.assert_array_equal(indices[1], [10, 11, 12, 13], err_msg=name)


def test_pallas_default_tiling_and_bfloat16(assert_close):
    queries, items, excluded = CASES[2].inputs(jnp.bfloat16)
    got = pallas.score_top_k(queries, items, 9, excluded, interpret=True)
    want = reference.score_top_k(queries, items, 9, excluded)
    assert_close(got[0], want[0], jnp.bfloat16)


def test_blocked_memory_does_not_grow_with_the_catalogue():
    queries = jax.ShapeDtypeStruct((64, 16), jnp.float32)

    def temp_bytes(implementation, num_items):
        items = jax.ShapeDtypeStruct((num_items, 16), jnp.float32)
        compiled = implementation.lower(queries, items, 10).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    block = blocked.DEFAULT_BLOCK_ITEMS
    small, large = (temp_bytes(blocked.score_top_k, n * block) for n in (25, 100))
    assert large == small < 64 * 100 * block * 4 / 10
    assert temp_bytes(reference.score_top_k, 100 * block) >= 64 * 100 * block * 4  # [Q, N]


def test_api_selects_pallas_on_gpu_only_within_its_k(monkeypatch):
    assert api.select_implementation(10) == "blocked"  # these tests run on CPU
    monkeypatch.setattr(api, "on_gpu", lambda: True)
    assert api.select_implementation(10) == "pallas"
    assert api.select_implementation(pallas.MAX_K + 1) == "blocked"


def test_api_forced_implementation_and_argument_checks():
    queries, items, _ = CASES[0].inputs(jnp.float32)
    want = reference.score_top_k(queries, items, 3)
    got = api.score_top_k(queries, items, 3, implementation="reference")
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="dtype"):
        api.score_top_k(queries, items.astype(jnp.bfloat16), 3)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        api.score_top_k(queries, items[:, :4], 3)
    with pytest.raises(ValueError, match="positive"):
        api.score_top_k(queries, items, 0)
    with pytest.raises(ValueError, match="excluded"):
        api.score_top_k(queries, items, 3, excluded=jnp.zeros((1, 2), jnp.int32))
    with pytest.raises(ValueError, match="k <="):
        pallas.score_top_k(queries, items, pallas.MAX_K + 1, interpret=True)
