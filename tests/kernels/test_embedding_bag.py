"""Every embedding-bag implementation against the reference (Pallas interpreted on CPU)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from recjax.layers.embedding import combine_bag
from recjax_kernels.embedding_bag import api, blocked, pallas, reference
from recjax_kernels.embedding_bag.reference import COMBINERS
from recjax_kernels.embedding_bag.specs import CASES, DTYPES

IMPLEMENTATIONS = {
    "blocked": blocked.embedding_bag,
    "pallas": functools.partial(pallas.embedding_bag, block_bags=8, interpret=True),
    "api": api.embedding_bag,
}


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_matches_reference(name, case, dtype, combiner, assert_close):
    table, ids, weights = case.inputs(dtype)
    if name == "pallas" and not pallas.supports(case.dim):
        with pytest.raises(ValueError, match="power-of-2"):
            IMPLEMENTATIONS[name](table, ids, weights, combiner=combiner, pad_id=case.pad_id)
        return
    want = reference.embedding_bag(table, ids, weights, combiner=combiner, pad_id=case.pad_id)

    got = IMPLEMENTATIONS[name](table, ids, weights, combiner=combiner, pad_id=case.pad_id)

    assert got.shape == (case.num_bags, case.dim) and got.dtype == table.dtype
    assert np.isfinite(np.asarray(got, np.float32)).all()
    assert_close(got, want, dtype)
    # Empty and all-zero-weight bags pool to exactly 0 (never NaN) under every combiner.
    np.testing.assert_array_equal(got[: case.empty_bags + case.zero_weight_bags], 0)


def test_reference_known_answer():
    table = jnp.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    ids = jnp.array([[0, 1, -1], [2, 2, -1], [-1, -1, -1]])
    weights = jnp.array([[1.0, 3.0, 9.0], [0.5, 0.5, 9.0], [1.0, 1.0, 1.0]])
    got = {c: reference.embedding_bag(table, ids, weights, combiner=c) for c in COMBINERS}
    np.testing.assert_allclose(got["sum"], [[1.0, 6.0], [4.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(got["mean"], [[0.25, 1.5], [4.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(
        got["sqrtn"],
        [[1 / 10**0.5, 6 / 10**0.5], [4 / 0.5**0.5, 4 / 0.5**0.5], [0.0, 0.0]],
        rtol=1e-6,
    )


@pytest.mark.parametrize("combiner", COMBINERS)
def test_reference_equals_the_layers_combine_bag(combiner):
    """recjax.layers pads with id 0: the kernel with pad_id=0 pools bags the same way."""
    case = next(c for c in CASES if c.pad_id == 0)
    table, ids, weights = case.inputs(jnp.float32)
    want = combine_bag(table[ids], ids, weights, combiner)
    got = reference.embedding_bag(table, ids, weights, combiner=combiner, pad_id=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_api_selects_pallas_on_gpu_only_for_power_of_2_dims(monkeypatch):
    assert api.select_implementation(64) == "blocked"  # these tests run on CPU
    monkeypatch.setattr(api, "on_gpu", lambda: True)
    assert api.select_implementation(64) == "pallas"
    assert api.select_implementation(24) == "blocked"


def test_api_argument_checks():
    table, ids, weights = CASES[1].inputs(jnp.float32)
    with pytest.raises(ValueError, match="combiner"):
        api.embedding_bag(table, ids, weights, combiner="max")
    with pytest.raises(ValueError, match="shape of ids"):
        api.embedding_bag(table, ids, weights[:, :2])
    with pytest.raises(ValueError, match="L >= 1"):
        api.embedding_bag(table, ids[:, :0])
    with pytest.raises(ValueError, match="table"):
        api.embedding_bag(table.astype(jnp.float16), ids)
