"""The `recjax` command end to end, through a subprocess, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "online_retail.py:smoke")


def recjax(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.run(
        [sys.executable, "-m", "recjax.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    result = recjax("train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress")
    assert result.returncode == 0, result.stderr
    return workdir, result.stdout


def test_train_writes_results_with_model_and_baselines(trained_workdir):
    workdir, stdout = trained_workdir
    results = json.loads((workdir / "results.json").read_text())
    assert results["dataset"] == "online_retail_smoke"
    assert set(results["metrics"]) == {"two_tower", "popularity", "cooccurrence"}
    for metrics in results["metrics"].values():
        assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@50"] <= 1.0
        assert metrics["num_users"] == 300
    retrieval = results["retrieval"]
    assert 0.0 <= retrieval["scann_recall@10_vs_exact"] <= 1.0
    assert retrieval["scann_qps"] > 0 and retrieval["exact_qps"] > 0
    assert "541,909 rows read" in stdout and "test metrics" in stdout
    assert (workdir / "metrics.jsonl").is_file() and any((workdir / "tensorboard").iterdir())


def test_rerun_resumes_instead_of_retraining(trained_workdir):
    workdir, _ = trained_workdir
    result = recjax("train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "training: resumed@30 → step 30" in result.stdout


def test_recommend_prints_k_items_with_descriptions(trained_workdir):
    workdir, _ = trained_workdir
    result = recjax("recommend", "--workdir", str(workdir), "--user", "12347", "--k", "5")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.strip().splitlines()
    assert header.startswith("# top 5 for user 12347 after all their events")
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4", "5"]
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_unknown_user_is_a_one_line_error(trained_workdir):
    workdir, _ = trained_workdir
    result = recjax("recommend", "--workdir", str(workdir), "--user", "424242")
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "unknown user id '424242'" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_missing_paths_are_one_line_errors(tmp_path):
    result = recjax("train", "--data", str(tmp_path / "nope.parquet"))
    assert result.returncode == 1 and "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr
    result = recjax("evaluate", "--workdir", str(tmp_path / "absent"))
    assert result.returncode == 1 and "is absent a recjax workdir" not in result.stderr
    assert "config.json not found" in result.stderr and "Traceback" not in result.stderr


def test_malformed_data_names_file_line_and_field(tmp_path):
    data = tmp_path / "u.data"
    data.write_text("1\t10\t5\t881250949\n2\tx\t3\t891717742\n")
    config = str(REPO / "experiments" / "movielens_100k.py:smoke")
    result = recjax(
        "train",
        "--config",
        config,
        "--data",
        str(data),
        "--workdir",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert result.returncode == 1
    assert f"{data}:2" in result.stderr and "Traceback" not in result.stderr


def test_sequence_encoder_trains_and_recommends_like_the_two_tower(tmp_path, shared_data):
    sequences = shared_data("s3rec-seqrec/LastFM.txt")
    config = str(REPO / "experiments" / "sequential.py:lastfm_sasrec_smoke")
    trained = recjax("train", "--config", config, "--workdir", str(tmp_path), "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert "sasrec" in json.loads((tmp_path / "results.json").read_text())["metrics"]
    result = recjax("recommend", "--workdir", str(tmp_path), "--user", "1", "--k", "5")
    assert result.returncode == 0, result.stderr
    _, *lines = result.stdout.strip().splitlines()
    ranked = [line.split() for line in lines if line.split()[0].isdigit()]
    assert [row[0] for row in ranked] == ["1", "2", "3", "4", "5"]
    scores = [float(row[1]) for row in ranked]
    assert scores == sorted(scores, reverse=True)
    # The protocol excludes the user's earlier items: none of user 1's LastFM items return.
    history = set(sequences.read_text().splitlines()[0].split()[1:])
    assert not {row[2] for row in ranked} & history
