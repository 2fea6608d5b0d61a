"""Measuring one jitted kernel call: compile time, median wall time, memory it adds.

The call is compiled ahead of time, then its first execution is measured for memory, when
its buffers are allocated for the first time (a later call may reuse pages the allocator
kept, and hide them): on CPU the rise of the process's peak resident set (Linux `VmHWM`,
reset just before), on an accelerator the rise of the device's `peak_bytes_in_use` over
the bytes in use before. Run each configuration in a fresh process, after creating its
inputs, so nothing earlier holds or hides its peak. XLA's planned temporary bytes come
along as a second, deterministic view of the same thing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax

_STATUS = Path("/proc/self/status")


def measure_call(
    fn: Callable[..., object], *args: object, repeats: int = 3, **static: object
) -> dict[str, float]:
    """Compiles `fn(*args, **static)` (a jitted function; `static` its static arguments)
    and measures it: compile seconds, peak memory rise and XLA temp bytes of the first
    execution, median seconds of `repeats` more."""
    start = time.perf_counter()
    compiled = fn.lower(*args, **static).compile()
    compile_seconds = time.perf_counter() - start
    memory_rise = _peak_memory_rise(compiled, *args)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        seconds.append(time.perf_counter() - start)
    return {
        "compile_seconds": compile_seconds,
        "seconds": statistics.median(seconds),
        "peak_memory_rise_bytes": memory_rise,
        "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
    }


def _peak_memory_rise(fn: Callable[..., object], *args: object) -> int:
    if jax.default_backend() == "cpu":
        Path("/proc/self/clear_refs").write_text("5")  # Resets VmHWM to the current RSS.
        before = _status_bytes("VmRSS")
        jax.block_until_ready(fn(*args))
        return _status_bytes("VmHWM") - before
    device = jax.devices()[0]
    before = device.memory_stats()["bytes_in_use"]
    jax.block_until_ready(fn(*args))
    return device.memory_stats()["peak_bytes_in_use"] - before


def _status_bytes(field: str) -> int:
    line = next(line for line in _STATUS.read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024  # The kernel reports kB.
