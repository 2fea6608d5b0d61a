"""A trained sequence encoder exports like the two-tower and serves the same query vectors."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from recjax.config import load_experiment
from recjax.embeddings import user_vectors
from recjax.export.exporter import bundle_contents, export_run, export_user_tower
from recjax.main_job import load_data, train_and_evaluate
from recjax.serving.recommender import Recommender
from recjax.serving.requests import RecommendRequest
from recjax.training.trainer import restore_trained

REPO_ROOT = Path(__file__).resolve().parents[2]


# Item attributes are a constant table inside the exported program: served the same way.
@pytest.fixture(scope="module", params=["lastfm_sasrec_smoke", "lastfm_sasrec_attributes_smoke"])
def sequence_run(request, shared_data, tmp_path_factory):
    shared_data("s3rec-seqrec/LastFM.txt")
    config = load_experiment(str(REPO_ROOT / "experiments" / f"sequential.py:{request.param}"))
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, max_steps=10, validate_every_epochs=None)
    )
    workdir = tmp_path_factory.mktemp("sequence_run")
    train_and_evaluate(config, workdir, progress=False, say=lambda _: None)
    data = load_data(config, say=lambda _: None)
    return config, data, restore_trained(config, data, workdir), workdir


def test_served_query_vectors_equal_the_trained_encoders(sequence_run, tmp_path):
    config, data, trained, workdir = sequence_run
    bundle = export_run(workdir, tmp_path / "bundle", say=lambda _: None)
    recommender = Recommender(bundle)
    contents = bundle_contents("{}", config.name, data, trained)
    rows = np.arange(5)
    users = data.users.raw(data.timelines.users[rows])
    positions = data.timelines.offsets[rows + 1]
    expected = user_vectors(
        trained.model, trained.state.params, data.query_features(positions, rows)
    )
    for user, vector in zip(users, expected, strict=True):
        served = recommender.recommend(RecommendRequest(user=str(user), k=3))
        assert served["path"] == "personalized"
        # Served scores are the served query vector's exact dot products: equal to the
        # trained encoder's for the same items. (Which items ScaNN finds among the
        # near-ties of a 10-step model is ScaNN's business, tested in tests/retrieval.)
        raw = np.array([int(item["item"]) for item in served["items"]])
        served_rows = data.items.lookup(raw) - data.items.first_known
        np.testing.assert_allclose(
            [item["score"] for item in served["items"]],
            contents.item_embeddings[served_rows] @ vector,
            rtol=1e-5,
            atol=1e-6,
        )


def test_encoders_with_time_features_are_refused(sequence_run):
    config, _, trained, _ = sequence_run
    timed = dataclasses.replace(
        trained.model, config=dataclasses.replace(trained.model.config, time_features=True)
    )
    with pytest.raises(ValueError, match="time_features"):
        export_user_tower(timed, trained.state.params, config.examples.history_length)
