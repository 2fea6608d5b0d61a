"""recjax_kernels: fused kernels for recjax, one folder each (installed from kernels/).

Each kernel folder holds `reference.py` (pure jnp, the spec), its Pallas and plain-JAX
implementations, `api.py` (picks one for the backend), `specs.py` (argument checks and the
shapes the equivalence tests and benchmarks run) and `benchmark.py`.
"""
