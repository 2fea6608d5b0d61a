"""Metrics logs: one JSON line per write, plus TensorBoard scalars.

`<workdir>/metrics.jsonl` is for scripts (results tables, tests); the event
files under `<workdir>/tensorboard/` are for `tensorboard --logdir`. A resumed
run appends to both; steps it redoes after its last checkpoint appear twice
in the JSONL, and `read_metrics` keeps every line as written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import jax
from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:
    """Appends `{"step": step, **metrics}` lines to metrics.jsonl and TensorBoard.

    Metric names keep their `/` namespaces (`train/loss`), which TensorBoard
    shows as sections. TensorBoard tags allow only `[-/\\w.]`, so tensorboardX
    shows e.g. `eval/recall@10` as `eval/recall_10`; the JSONL keeps the name.
    Only process 0 writes unless `enabled` says otherwise. `flush_secs`: how
    often tensorboardX's writer thread pushes queued events to disk.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        enabled: bool | None = None,
        flush_secs: float = 30.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = None
        self._tensorboard = None
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / METRICS_FILE
        # Line-buffered: `tail -f metrics.jsonl` follows a run as it trains.
        self._jsonl = path.open("a", encoding="utf-8", buffering=1)
        if _ends_with_partial_line(path):
            # A crash mid-write left half a line: start ours on a fresh one.
            self._jsonl.write("\n")
        # tensorboardX names event files by the second and opens them with "wb":
        # a restart within the same second would overwrite the last run's file.
        self._tensorboard = SummaryWriter(
            logdir=str(self.workdir / TENSORBOARD_DIR),
            flush_secs=flush_secs,
            filename_suffix=f".{time.time_ns()}",
        )

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Logs scalar `metrics` (anything `float()` accepts) at `step`."""
        if not self.enabled:
            return
        step = int(step)
        values = {str(name): float(value) for name, value in metrics.items()}
        if "step" in values:
            raise ValueError("'step' is reserved for the step number, not a metric name")
        # Non-finite values are written as NaN/Infinity, which json.loads reads.
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        for name, value in values.items():
            self._tensorboard.add_scalar(name, value, global_step=step)

    def flush(self) -> None:
        """Makes every JSONL line so far readable. TensorBoard events are
        queued to a tensorboardX thread that writes them within `flush_secs`;
        only `close()` guarantees they are on disk."""
        if self.enabled:
            self._jsonl.flush()
            self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled and not self._jsonl.closed:
            self._jsonl.close()
            self._tensorboard.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_metrics(workdir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Returns the records of `<workdir>/metrics.jsonl` in order, skipping the
    partial line a crash mid-write may leave."""
    path = Path(workdir) / METRICS_FILE
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


def _ends_with_partial_line(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"
