"""Multi-process training: two processes on localhost (jax.distributed, gloo) train together
exactly like one process over as many devices; joining a job checks its description."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from recjax.config import load_experiment
from recjax.data.examples import RetrievalData
from recjax.data.sources import load_events
from recjax.sharding import distributed
from recjax.sharding.distributed import DistributedConfig, initialize, resolve
from recjax.sharding.mesh import MeshConfig
from recjax.training.trainer import restore_trained, train

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 2
TIMEOUT_S = 300  # Per process; a healthy run takes well under a minute.
# The smoke experiment, cut to 5 logged steps and a small evaluation.
EXPERIMENT = f"""
import dataclasses
from recjax.config import load_experiment

def get_config(variant="default"):
    config = load_experiment({str(REPO / "experiments" / "online_retail.py:smoke")!r})
    train = dataclasses.replace(config.train, max_steps=5, log_every_steps=1)
    evaluation = dataclasses.replace(config.eval, max_users=30)
    return dataclasses.replace(config, train=train, eval=evaluation)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _losses(workdir: Path) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in lines]


def _launch(index: int, experiment: Path, workdir: Path, address: str) -> subprocess.Popen:
    """`recjax train` as process `index` of the job; its output goes to workdir.parent."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RECJAX_") and key != "XLA_FLAGS"
    }
    # One CPU device per process: the data-parallel mesh spans both processes' devices.
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    flags = ["--config", str(experiment), "--workdir", str(workdir), "--no-progress"]
    flags += ["--mesh", "data=-1", "--coordinator", address]
    flags += ["--num-processes", str(PROCESSES), "--process-id", str(index)]
    with _log(workdir, index, "out").open("w") as out, _log(workdir, index, "err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "recjax.cli", "train", *flags],
            stdout=out,
            stderr=err,
            env=env,
            cwd=REPO,
        )


def _log(workdir: Path, index: int, stream: str) -> Path:
    return workdir.parent / f"process{index}.{stream}"


def test_two_processes_train_like_one_process_on_as_many_devices(tmp_path):
    experiment = tmp_path / "experiment.py"
    experiment.write_text(EXPERIMENT)
    workdir, address = tmp_path / "run", f"127.0.0.1:{_free_port()}"
    processes = []
    try:
        processes = [_launch(index, experiment, workdir, address) for index in range(PROCESSES)]
        # The single-process reference trains meanwhile, on as many (fake) devices.
        config = dataclasses.replace(
            load_experiment(str(experiment)), mesh=MeshConfig(data=PROCESSES, model=1)
        )
        data = RetrievalData.build(load_events(config.data).events, config.examples)
        single = train(config, data, tmp_path / "single", progress=False)
        for process in processes:
            process.wait(timeout=TIMEOUT_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for index, process in enumerate(processes):
        stderr = _log(workdir, index, "err").read_text()
        assert process.returncode == 0, f"process {index}:\n{stderr[-3000:]}"

    # Process 0 alone logs, evaluates and prints; the losses are the single process's.
    losses = _losses(workdir)
    assert len(losses) == 5
    np.testing.assert_allclose(losses, _losses(tmp_path / "single"), rtol=1e-5)
    assert json.loads((workdir / "results.json").read_text())["steps"] == 5
    assert "wrote" in _log(workdir, 0, "out").read_text()
    printed = _log(workdir, 1, "out").read_text().splitlines()
    assert [line for line in printed if not line.startswith("[Gloo]")] == []
    # The checkpoint both processes wrote restores in this one.
    restored = restore_trained(config, data, workdir)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        restored.state.params,
        single.state.params,
    )


@pytest.fixture
def no_job_in_environment(monkeypatch):
    for name in (
        distributed.COORDINATOR_ENV,
        distributed.NUM_PROCESSES_ENV,
        distributed.PROCESS_ID_ENV,
    ):
        monkeypatch.delenv(name, raising=False)


def test_resolve_takes_unset_fields_from_the_environment():
    environ = {
        distributed.COORDINATOR_ENV: "10.0.0.1:1234",
        distributed.NUM_PROCESSES_ENV: "4",
        distributed.PROCESS_ID_ENV: "3",
    }
    assert resolve(DistributedConfig(process_id=0), environ) == DistributedConfig(
        coordinator_address="10.0.0.1:1234", num_processes=4, process_id=0, cpu_collectives="gloo"
    )
    assert resolve(DistributedConfig(), {}) == DistributedConfig(cpu_collectives="gloo")
    with pytest.raises(ValueError, match=r"\$RECJAX_PROCESS_ID must be an integer"):
        resolve(DistributedConfig(), {distributed.PROCESS_ID_ENV: "first"})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (DistributedConfig(process_id=1), "needs a coordinator"),
        (DistributedConfig(coordinator_address="host", num_processes=2, process_id=0), "HOST:PORT"),
        (DistributedConfig(coordinator_address="host:1234", num_processes=2), "process's id"),
        (
            DistributedConfig(coordinator_address="host:1234", num_processes=2, process_id=2),
            r"not in 0 \.\.\. 1",
        ),
        (DistributedConfig(coordinator_address="auto", num_processes=0), "at least 1"),
    ],
)
@pytest.mark.usefixtures("no_job_in_environment")
def test_initialize_rejects_incomplete_or_inconsistent_jobs(config, message):
    with pytest.raises(ValueError, match=message):
        initialize(config)
    assert not jax.distributed.is_initialized()


@pytest.mark.usefixtures("no_job_in_environment")
def test_initialize_without_a_job_is_a_single_process():
    initialize(DistributedConfig())
    assert not jax.distributed.is_initialized()
