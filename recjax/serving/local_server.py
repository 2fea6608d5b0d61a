"""`recjax serve` as a child process on a free localhost port (for tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def local_server(
    bundle: str | Path,
    request_log: str | Path,
    *,
    cache_seconds: float = 2.0,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Serves `bundle` until the block ends; yields the base URL once /healthz answers."""
    port = free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recjax.cli",
            "serve",
            "--bundle",
            str(bundle),
            "--port",
            str(port),
            "--request-log",
            str(request_log),
            "--cache-seconds",
            str(cache_seconds),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(f"{url}/healthz", server, timeout)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"recjax serve exited ({server.returncode}): {server.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
