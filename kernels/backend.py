"""What the running JAX backend offers the kernels."""

from __future__ import annotations

import jax


def on_gpu() -> bool:
    """Whether JAX's default backend is a GPU, where Pallas kernels compile through Triton."""
    return jax.default_backend() == "gpu"


def interpret_pallas(interpret: bool | None) -> bool:
    """`interpret` if given; by default Pallas kernels are interpreted unless on a GPU."""
    return not on_gpu() if interpret is None else interpret
