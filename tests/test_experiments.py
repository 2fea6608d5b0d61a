"""Every experiment's smoke variant runs on its real data, and its loss falls."""

import json
from pathlib import Path

import pytest

from recjax.config import load_experiment
from recjax.main_job import train_and_evaluate

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SHARED_FILES = {
    "online_retail": None,  # embedded in the package
    "movielens_100k": "movielens-100k/u.data",
    "amazon_beauty": "s3rec-seqrec/Beauty.txt",
    "sequential:beauty_sasrec_smoke": "s3rec-seqrec/Beauty.txt",
    "sequential:beauty_hstu_smoke": "s3rec-seqrec/Beauty.txt",
    "sequential:lastfm_bag_of_events_smoke": "s3rec-seqrec/LastFM.txt",
    "sequential:lastfm_sasrec_attributes_smoke": "s3rec-seqrec/LastFM.txt",
}


@pytest.mark.parametrize("name", sorted(SHARED_FILES))
def test_smoke_variant_trains_and_evaluates(name, shared_data, tmp_path):
    if SHARED_FILES[name]:
        shared_data(SHARED_FILES[name])
    file, _, variant = name.partition(":")
    config = load_experiment(f"{EXPERIMENTS / file}.py:{variant or 'smoke'}")
    said = []
    results = train_and_evaluate(config, tmp_path, progress=False, say=said.append)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [line["train/loss"] for line in lines if "train/loss" in line]
    assert losses[-1] < losses[0], losses
    assert results["steps"] == config.train.max_steps
    for metrics in results["metrics"].values():
        assert metrics["num_users"] == config.eval.max_users
        largest = f"recall@{max(config.eval.ks)}"
        assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= metrics[largest] <= 1.0
    assert any(line.startswith("test metrics") for line in said)
