"""Fixed tolerances per dtype for the kernel equivalence tests: never loosened to pass.

float32: implementations differ only in summation order. bfloat16 inputs: pooled bags are
rounded to bfloat16 (8 significant bits: one ulp is ~0.4% of the value), and top-k scores
from bfloat16 embeddings are held to the same bound.
"""

import jax.numpy as jnp
import numpy as np
import pytest

TOLERANCES = {
    jnp.dtype(jnp.float32): {"rtol": 1e-5, "atol": 1e-5},
    jnp.dtype(jnp.bfloat16): {"rtol": 1e-2, "atol": 1e-2},
}


@pytest.fixture
def assert_close():
    """assert_close(actual, desired, dtype): allclose at the tolerance of input `dtype`."""

    def check(actual, desired, dtype, err_msg=""):
        np.testing.assert_allclose(
            np.asarray(actual, np.float32),
            np.asarray(desired, np.float32),
            err_msg=err_msg,
            **TOLERANCES[jnp.dtype(dtype)],
        )

    return check
