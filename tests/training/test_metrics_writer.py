"""MetricsWriter: JSONL lines and TensorBoard scalars read back, crash-safe appends."""

import json
import struct
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from recjax.training.metrics_writer import MetricsWriter, read_metrics


def _tensorboard_scalars(logdir: Path) -> dict[tuple[str, int], float]:
    """{(tag, step): value} from every event file, parsing TFRecord framing by hand:
    uint64 length, uint32 length CRC, payload, uint32 payload CRC."""
    scalars = {}
    paths = sorted(logdir.glob("events.out.tfevents.*"))
    assert paths, f"no event file in {logdir}"
    for path in paths:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    return scalars


def test_jsonl_and_tensorboard_hold_what_was_written(tmp_path):
    with MetricsWriter(tmp_path) as writer:
        writer.write(1, {"train/loss": 0.5, "train/lr": np.float32(0.25)})
        writer.write(jnp.asarray(2), {"train/loss": jnp.asarray(0.125), "eval/recall@10": 3})

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "train/loss": 0.5, "train/lr": 0.25},
        {"step": 2, "train/loss": 0.125, "eval/recall@10": 3.0},
    ]
    assert all(type(v) is float for v in json.loads(lines[1]).values() if v != 2)

    assert _tensorboard_scalars(tmp_path / "tensorboard") == {
        ("train/loss", 1): 0.5,
        ("train/lr", 1): 0.25,
        ("train/loss", 2): 0.125,
        ("eval/recall_10", 2): 3.0,  # TensorBoard's tag charset; the JSONL keeps "@"
    }


def test_flush_makes_lines_visible_before_close(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(7, {"train/loss": 1.5})
    writer.flush()
    assert read_metrics(tmp_path) == [{"step": 7, "train/loss": 1.5}]
    writer.close()  # TensorBoard events are only guaranteed on disk after close
    assert _tensorboard_scalars(tmp_path / "tensorboard") == {("train/loss", 7): 1.5}
    writer.close()  # idempotent


def test_resumed_run_appends(tmp_path):
    with MetricsWriter(tmp_path) as writer:
        writer.write(1, {"train/loss": 2.0})
        writer.write(2, {"train/loss": 1.0})
    with MetricsWriter(tmp_path) as writer:
        writer.write(3, {"train/loss": 0.5})
    assert read_metrics(tmp_path) == [
        {"step": 1, "train/loss": 2.0},
        {"step": 2, "train/loss": 1.0},
        {"step": 3, "train/loss": 0.5},
    ]
    assert _tensorboard_scalars(tmp_path / "tensorboard") == {
        ("train/loss", 1): 2.0,
        ("train/loss", 2): 1.0,
        ("train/loss", 3): 0.5,
    }


def test_partial_last_line_does_not_swallow_the_next_write(tmp_path):
    # A crash mid-write left the second record half written.
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "tra')
    with MetricsWriter(tmp_path) as writer:
        writer.write(2, {"train/loss": 1.0})
    lines = (tmp_path / "metrics.jsonl").read_text().split("\n")
    assert lines == ['{"step": 1, "train/loss": 2.0}', '{"step": 2, "tra', lines[2], ""]
    assert json.loads(lines[2]) == {"step": 2, "train/loss": 1.0}
    assert read_metrics(tmp_path) == [
        {"step": 1, "train/loss": 2.0},
        {"step": 2, "train/loss": 1.0},
    ]


def test_non_finite_values_round_trip(tmp_path):
    with MetricsWriter(tmp_path) as writer:
        writer.write(1, {"train/loss": float("nan"), "train/grad_norm": float("inf")})
    (record,) = read_metrics(tmp_path)
    assert np.isnan(record["train/loss"]) and record["train/grad_norm"] == float("inf")


def test_disabled_writer_writes_nothing(tmp_path):
    with MetricsWriter(tmp_path / "run", enabled=False) as writer:
        writer.write(1, {"train/loss": 1.0})
        writer.flush()
    assert not (tmp_path / "run").exists()


def test_step_is_not_a_metric_name(tmp_path):
    with MetricsWriter(tmp_path) as writer, pytest.raises(ValueError, match="reserved"):
        writer.write(1, {"step": 3.0})
