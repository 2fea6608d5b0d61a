"""Serving bundles: exported towers equal the in-process model, tampering is refused,
the recommender serves known users, sessions and cold starts from the bundle alone."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from jax import export

from recjax.data.splits import Role
from recjax.embeddings import item_vectors, user_vectors
from recjax.export.bundle import BundleError, read_bundle, unflatten_params
from recjax.serving.recommender import Recommender, ServingConfig
from recjax.serving.requests import RecommendRequest


@pytest.fixture(scope="module")
def run(smoke_run):
    return smoke_run


@pytest.mark.parametrize("batch", [1, 37])
def test_exported_user_tower_matches_the_in_process_model(run, batch):
    data, trained, bundle = run
    contents = read_bundle(bundle)
    tower = export.deserialize(bytearray(contents.user_tower))
    positions = data.eval_set(Role.TEST).positions[:batch]
    features = data.query_features(positions)
    exported = tower.call(
        unflatten_params(contents.user_tower_params),
        features["user"],
        features["history"],
        features["context"],
    )
    expected = user_vectors(trained.model, trained.state.params, features)
    np.testing.assert_allclose(np.asarray(exported), expected, rtol=1e-5, atol=1e-6)
    assert exported.shape == (batch, expected.shape[1])


def test_bundle_item_embeddings_and_vocab_match_the_model(run):
    data, trained, bundle = run
    contents = read_bundle(bundle)
    expected = item_vectors(trained.model, trained.state.params, data)[data.items.first_known :]
    np.testing.assert_allclose(contents.item_embeddings, expected, rtol=1e-6)
    np.testing.assert_array_equal(contents.vocab["items"], data.items.ids)
    np.testing.assert_array_equal(contents.catalogue_ids, data.items.ids)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["versions"]["jax"] == jax.__version__
    assert not list(bundle.rglob("*.pkl")) and not list(bundle.rglob("*.pickle"))


def test_known_user_vector_equals_the_query_after_all_their_events(run):
    data, trained, bundle = run
    recommender = Recommender(bundle, ServingConfig(cache_seconds=0))
    user = str(data.users.ids[10])
    positions, rows = data.latest_positions(np.asarray([data.users.ids[10]]))
    expected = user_vectors(
        trained.model, trained.state.params, data.query_features(positions, rows)
    )[0]
    query, unknown = recommender.query(RecommendRequest(user=user))
    vector, cached = recommender.user_vector(query)
    assert query.path == "personalized" and unknown == [] and not cached
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)


def test_recommendations_are_exact_top_k_of_the_user_vector(run):
    _, _, bundle = run
    recommender = Recommender(bundle)
    response = recommender.recommend(RecommendRequest(user="12347", k=10))
    assert response["path"] == "personalized" and len(response["items"]) == 10
    query, _ = recommender.query(RecommendRequest(user="12347"))
    vector, cached = recommender.user_vector(query)
    assert cached  # the same query moments later reuses the vector
    exact = recommender.item_embeddings @ vector
    top = [str(recommender.catalogue_ids[i]) for i in np.argsort(-exact, kind="stable")[:10]]
    assert [item["item"] for item in response["items"]] == top
    assert [stage["name"] for stage in response["stages"]] == [
        "user_tower",
        "retrieval",
        "pre_ranking",
    ]
    json.dumps(response)  # JSON-ready


def test_cold_start_paths_say_so(run):
    _, _, bundle = run
    recommender = Recommender(bundle)
    session = recommender.recommend(
        RecommendRequest(user="no-such-user", recent_items=("22423", "nope"), k=5)
    )
    assert session["path"] == "session" and session["unknown_recent_items"] == ["nope"]
    assert len(session["items"]) == 5
    cold = recommender.recommend(RecommendRequest(user="no-such-user", k=3))
    assert cold["path"] == "popularity"
    popular = recommender.catalogue_ids[np.argsort(-read_bundle(bundle).popularity)[:3]]
    assert [item["item"] for item in cold["items"]] == [str(i) for i in popular]


def test_session_items_change_a_known_users_recommendations(run):
    _, _, bundle = run
    recommender = Recommender(bundle)
    plain = recommender.recommend(RecommendRequest(user="12347", k=10))
    with_session = recommender.recommend(
        RecommendRequest(user="12347", recent_items=("22423", "22423", "85123A"), k=10)
    )
    assert [i["item"] for i in plain["items"]] != [i["item"] for i in with_session["items"]]


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete", "add_file", "manifest"])
def test_tampered_or_truncated_bundles_are_refused(run, tmp_path, damage):
    _, _, bundle = run
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    target = copy / "item_embeddings.npy"
    if damage == "flip_byte":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "delete":
        (copy / "scann" / "dataset.npy").unlink()
    elif damage == "add_file":
        (copy / "evil.npy").write_bytes(b"x")
    else:
        (copy / "manifest.json").write_text("{not json")
    expected = {
        "flip_byte": "sha256 mismatch",
        "truncate": "sha256 mismatch",
        "delete": "scann/dataset.npy is missing",
        "add_file": "evil.npy is not in the",
        "manifest": "corrupt",
    }[damage]
    with pytest.raises(BundleError, match=expected):
        Recommender(copy)
