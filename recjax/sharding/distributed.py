"""Joining a multi-process JAX job: `jax.distributed.initialize` from flags or environment.

Every process (usually one per host) runs the same program; after `initialize`,
`jax.devices()` lists the devices of all of them and one mesh spans them all. It must
run before anything else touches JAX (a computation, `jax.devices()`, ...).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax

COORDINATOR_ENV = "RECJAX_COORDINATOR"
NUM_PROCESSES_ENV = "RECJAX_NUM_PROCESSES"
PROCESS_ID_ENV = "RECJAX_PROCESS_ID"
CPU_COLLECTIVES_ENV = "RECJAX_CPU_COLLECTIVES"
# Coordinator "address" that lets JAX find the cluster itself (TPU pod slices, SLURM, Open MPI).
AUTO = "auto"
_DEFAULT_CPU_COLLECTIVES = "gloo"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """Which multi-process job to join. A None field falls back to its RECJAX_* variable."""

    # HOST:PORT of process 0, which runs the coordinator there; "auto": JAX detects the
    # cluster. None (and no $RECJAX_COORDINATOR): a single-process run.
    coordinator_address: str | None = None
    # Processes in the job ($RECJAX_NUM_PROCESSES); needed with a HOST:PORT coordinator.
    num_processes: int | None = None
    # This process's index, 0 ... num_processes - 1 ($RECJAX_PROCESS_ID).
    process_id: int | None = None
    # Cross-process collectives of CPU devices, "gloo" or "mpi" ($RECJAX_CPU_COLLECTIVES,
    # else "gloo"). Harmless on GPU/TPU, whose collectives don't use it.
    cpu_collectives: str | None = None


def resolve(
    config: DistributedConfig, environ: Mapping[str, str] = os.environ
) -> DistributedConfig:
    """`config` with every None field taken from its environment variable (if set)."""

    def text(value: str | None, name: str) -> str | None:
        return value if value is not None else environ.get(name) or None

    def number(value: int | None, name: str) -> int | None:
        if value is not None or not environ.get(name):
            return value
        try:
            return int(environ[name])
        except ValueError:
            raise ValueError(f"${name} must be an integer, got {environ[name]!r}") from None

    return DistributedConfig(
        coordinator_address=text(config.coordinator_address, COORDINATOR_ENV),
        num_processes=number(config.num_processes, NUM_PROCESSES_ENV),
        process_id=number(config.process_id, PROCESS_ID_ENV),
        cpu_collectives=text(config.cpu_collectives, CPU_COLLECTIVES_ENV)
        or _DEFAULT_CPU_COLLECTIVES,
    )


def initialize(config: DistributedConfig) -> None:
    """Joins the job `config` (or the environment) describes; does nothing for a single process.

    Raises:
      ValueError: an incomplete or inconsistent description (e.g. a process id without a
        coordinator, or one outside 0 ... num_processes - 1).
      RuntimeError: JAX was already used in this process (from `jax.distributed`).
    """
    config = resolve(config)
    address, count, index = config.coordinator_address, config.num_processes, config.process_id
    if address is None:
        if count is not None or index is not None:
            raise ValueError(
                f"A process count or id needs a coordinator (HOST:PORT of process 0, or "
                f"{AUTO!r}): pass --coordinator or set ${COORDINATOR_ENV}."
            )
        return
    if address != AUTO:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Coordinator must be HOST:PORT or {AUTO!r}, got {address!r}.")
        if count is None or index is None:
            raise ValueError(
                f"Coordinator {address} needs the number of processes and this process's id "
                f"(--num-processes/--process-id or ${NUM_PROCESSES_ENV}/${PROCESS_ID_ENV})."
            )
    if count is not None and count < 1:
        raise ValueError(f"The number of processes must be at least 1, got {count}.")
    if index is not None and count is not None and not 0 <= index < count:
        raise ValueError(f"Process id {index} is not in 0 ... {count - 1}.")
    # Read when the CPU backend starts, so it must be set before any JAX use.
    jax.config.update("jax_cpu_collectives_implementation", config.cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=None if address == AUTO else address,
        num_processes=count,
        process_id=index,
    )
