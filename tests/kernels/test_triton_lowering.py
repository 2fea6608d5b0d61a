"""The Pallas kernels lower for CUDA through Triton, checked without a GPU.

`jax.export` lowers for a platform the machine lacks, running every Triton lowering rule
(the code a GPU would compile to PTX), so an op Triton cannot express, a tile that is not
a power of 2 or a fall-through to the Mosaic GPU backend fails here, on CPU.
"""

import functools

import jax
import jax.numpy as jnp
import pytest
from jax import export

from recjax_kernels.embedding_bag import pallas as bag_pallas
from recjax_kernels.score_top_k import pallas as top_k_pallas

TRITON_CALL = "__gpu$xla.gpu.triton"
Spec = jax.ShapeDtypeStruct


def _triton_calls(fn, *args, **kwargs) -> int:
    exported = export.export(
        jax.jit(fn),
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(TRITON_CALL)],
    )(*args, **kwargs)
    return exported.mlir_module().count(TRITON_CALL)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("num_excluded", [0, 37])
@pytest.mark.parametrize("k", [10, top_k_pallas.MAX_K])
def test_score_top_k_lowers_to_one_triton_kernel(k, num_excluded, dtype):
    fn = functools.partial(top_k_pallas.score_top_k, k=k, interpret=False)
    excluded = Spec((300, num_excluded), jnp.int32) if num_excluded else None
    queries, items = Spec((300, 40), dtype), Spec((100_003, 40), dtype)
    assert _triton_calls(fn, queries, items, excluded=excluded) == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("dim", [16, 256])
def test_embedding_bag_lowers_to_one_triton_kernel(dim, dtype):
    fn = functools.partial(bag_pallas.embedding_bag, combiner="sqrtn", interpret=False)
    table, ids = Spec((100_000, dim), dtype), Spec((1000, 7), jnp.int32)
    assert _triton_calls(fn, table, ids, Spec((1000, 7), jnp.float32)) == 1
