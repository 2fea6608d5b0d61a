"""The funnel: stage functions against hand-computed answers, then the whole funnel on the
Online Retail smoke run's bundle with a briefly trained ranker, in process and through
`recjax train-ranker` / `recjax recommend --funnel`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recjax.data.event_log import EventLog
from recjax.data.ranking_examples import Candidates, RankingData
from recjax.data.ranking_serving import ServingFeatures
from recjax.data.retrieval_negatives import RETRIEVAL_FEATURES
from recjax.export.bundle import add_directory
from recjax.export.ranker import RANKER_DIR, run_ranker_export
from recjax.losses.multitask import TaskSpec
from recjax.serving.categories import description_categories, description_category
from recjax.serving.funnel import Funnel, FunnelConfig, mmr, not_consumed, value
from recjax.serving.ranker import ServedRanker
from recjax.serving.requests import RecommendRequest

REPO = Path(__file__).resolve().parents[2]


def test_value_is_the_weighted_sum_of_task_scores():
    scores = {"click": np.array([0.5, 0.2]), "hide": np.array([0.1, 0.4]), "dwell": np.ones(2)}
    np.testing.assert_allclose(
        value(scores, {"click": 2.0, "hide": -0.5}), [2 * 0.5 - 0.05, 2 * 0.2 - 0.2]
    )


def test_mmr_with_lambda_one_is_relevance_order():
    vectors = np.random.default_rng(0).normal(size=(4, 3))
    order, objectives = mmr(np.array([0.3, 0.9, 0.1, 0.5]), vectors, 4, mmr_lambda=1.0)
    np.testing.assert_array_equal(order, [1, 3, 0, 2])
    np.testing.assert_allclose(objectives, [1.0, 0.5, 0.25, 0.0])  # min-max scaled relevance


def test_mmr_demotes_a_duplicate_item_vector():
    # Item 1 is item 0 again; item 2 is less relevant but different.
    vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    order, objectives = mmr(np.array([1.0, 0.9, 0.8]), vectors, 3, mmr_lambda=0.5)
    np.testing.assert_array_equal(order, [0, 2, 1])
    # Scaled relevance 1, 0.5, 0: then 0.5·0 − 0.5·0 for item 2, 0.5·0.5 − 0.5·1 for item 1.
    np.testing.assert_allclose(objectives, [0.5, 0.0, -0.25])


def test_mmr_keeps_at_most_max_per_category():
    relevance = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    categories = np.array([0, 0, 0, 1, 1, 2])
    order, _ = mmr(
        relevance,
        np.eye(6),
        6,
        mmr_lambda=1.0,
        categories=categories,
        max_per_category=2,
    )
    np.testing.assert_array_equal(order, [0, 1, 3, 4, 5])  # the third of category 0 is skipped


def test_not_consumed():
    np.testing.assert_array_equal(
        not_consumed(np.array([5, 3, 9, 1]), np.array([9, 5, 7])), [False, True, False, True]
    )


def test_description_category_skips_colours_sizes_and_patterns():
    assert description_category("WHITE HANGING HEART T-LIGHT HOLDER") == "HOLDER"
    assert description_category("LUNCH BAG RED RETROSPOT") == "BAG"
    assert description_category("PACK OF 72 RETROSPOT CAKE CASES") == "CASE"
    assert description_category("RECYCLED ACAPULCO MAT BLUE") == "MAT"
    assert description_category("DRAWER KNOB CRACKLE GLAZE GLASS") == "GLASS"
    assert description_category("12 PINK") == "PINK"  # nothing else to go by
    codes, names = description_categories(np.array(["JUMBO BAG RED", "LUNCH BAGS", "MUG"]))
    np.testing.assert_array_equal(codes, [0, 0, 1])
    np.testing.assert_array_equal(names, ["BAG", "MUG"])


def test_serving_features_encode_like_the_log_after_its_last_event():
    events = EventLog(
        user=np.array([1, 1, 1, 2, 2]),
        item=np.array([10, 11, 12, 10, 13]),
        timestamp=np.array([100, 200, 300, 150, 400]),
        event_type=np.zeros(5, np.int8),
        value=np.ones(5, np.float32),
    )
    candidates = Candidates(
        user=events.user,
        item=events.item,
        timestamp=events.timestamp,
        categorical={"country": np.array(["uk", "uk", "fr", "de", "de"])},
        numeric={"price": np.array([1.0, 2.0, 3.0, 1.0, 4.0])},
        labels={"click": np.ones(5, np.float32)},
        masks={"click": np.ones(5, bool)},
    )
    data = RankingData.build(
        "tiny",
        candidates,
        events,
        (TaskSpec(name="click", kind="binary"),),
        session_length=2,
        valid_quantile=0.5,
        test_quantile=0.75,
    )
    features = ServingFeatures.build(data.encoder, candidates, events, item_fields=("price",))
    served = features.encode(data.encoder, np.array(1), np.array([13, 10, 99]), 500)
    # The same candidates through the log-scanning encoder, shown after every event:
    # user 1's latest country is "fr"; prices are the items' (unknown item 99: the most
    # common price).
    expected = data.encoder.encode(
        Candidates(
            user=np.array([1, 1, 1]),
            item=np.array([13, 10, 99]),
            timestamp=np.full(3, 500),
            categorical={"country": np.array(["fr", "fr", "fr"])},
            numeric={"price": np.array([4.0, 1.0, 1.0])},
        ),
        events,
    )
    assert set(served) == set(expected)
    for name in expected:
        np.testing.assert_allclose(served[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(served["session"][0], data.encoder.items.lookup([11, 12]))


# ----------------------------------------------------------------- the whole funnel


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
def ranked_run(smoke_run):
    """The smoke run's workdir, with a ranker trained by `recjax train-ranker`."""
    workdir = smoke_run[2].parent
    result = recjax("train-ranker", "--workdir", str(workdir), "--max-steps", "20", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "exported the ranker" in result.stdout
    return workdir


@pytest.fixture(scope="module")
def ranked_bundle(ranked_run, smoke_run, tmp_path_factory):
    """The smoke run's bundle with the run's ranker added."""
    bundle = tmp_path_factory.mktemp("funnel") / "bundle"
    shutil.copytree(smoke_run[2], bundle)
    add_directory(bundle, RANKER_DIR, run_ranker_export(ranked_run))
    return bundle


@pytest.fixture(scope="module")
def funnel(ranked_bundle):
    return Funnel(ranked_bundle, FunnelConfig(max_per_category=2))


def _users(funnel: Funnel, count: int) -> list[str]:
    return [str(user) for user in funnel.recommender.users.ids[:count]]


def test_counts_shrink_stage_by_stage(funnel):
    response = funnel.recommend(RecommendRequest(user="12347", k=10))
    counts = {stage["name"]: stage["candidates"] for stage in response["stages"]}
    assert list(counts) == [
        "user_tower",
        "retrieval",
        "consumed_removed",
        "pre_ranking",
        "ranking",
        "re_ranking",
    ]
    assert counts["retrieval"] == 1000
    assert 200 < counts["consumed_removed"] < 1000  # 12347 bought many catalogue items
    assert (counts["pre_ranking"], counts["ranking"], counts["re_ranking"]) == (200, 50, 10)
    assert all(stage["latency_ms"] > 0 for stage in response["stages"])
    assert len(response["items"]) == 10 and response["path"] == "personalized"


def test_consumed_items_never_come_back(funnel):
    recommender = funnel.recommender
    first = recommender.items.first_known
    for user in _users(funnel, 20):
        query, _ = recommender.query(RecommendRequest(user=user))
        history = {str(recommender.catalogue_ids[i - first]) for i in query.history if i >= first}
        served = {item["item"] for item in funnel.recommend(RecommendRequest(user=user))["items"]}
        assert served and not served & history, user
    # Items the request says were just consumed are removed too.
    before = [i["item"] for i in funnel.recommend(RecommendRequest(user="12347"))["items"]]
    after = funnel.recommend(RecommendRequest(user="12347", recent_items=tuple(before[:3])))
    assert not {item["item"] for item in after["items"]} & set(before[:3])


def test_max_per_category_holds_and_value_is_the_weighted_sum(funnel):
    weights = funnel.config.task_weights
    for user in _users(funnel, 20):
        items = funnel.recommend(RecommendRequest(user=user, k=10))["items"]
        categories = [item["category"] for item in items]
        assert max(categories.count(c) for c in categories) <= 2, user
        for item in items:
            scores = item["scores"]
            expected = sum(weight * scores[task] for task, weight in weights.items())
            np.testing.assert_allclose(scores["value"], expected, rtol=1e-6)
            assert 0 <= scores["purchase"] <= 1 and 0 <= scores["cancellation"] <= 1
        mmr_scores = [item["scores"]["mmr"] for item in items]
        assert mmr_scores[0] == pytest.approx(funnel.config.mmr_lambda)  # best value first


def test_the_ranker_reads_the_retrieval_score_and_rank_it_was_trained_with(funnel, monkeypatch):
    assert set(RETRIEVAL_FEATURES) <= set(funnel.ranker.encoder.numeric_names)
    seen = []
    score_items = ServedRanker.score_items

    def spy(self, user, items, timestamp, request_numeric=None):
        seen.append(request_numeric)
        return score_items(self, user, items, timestamp, request_numeric)

    monkeypatch.setattr(ServedRanker, "score_items", spy)
    response = funnel.recommend(RecommendRequest(user="12347", k=10))
    retrieval = seen[-1]
    # Ranks among the 1,000 retrieved, by the exact score: best first, consumed items
    # removed before, so the 200 kept have distinct ranks below 1,000.
    ranks = np.expm1(retrieval["retrieval_log_rank"])
    np.testing.assert_allclose(ranks, np.round(ranks), atol=1e-6)
    assert len(set(ranks.round())) == 200 and ranks.max() < 1000
    order = np.argsort(ranks)
    assert np.all(np.diff(retrieval["retrieval_score"][order]) <= 1e-6)
    served = {item["item"]: item["scores"]["pre_ranking"] for item in response["items"]}
    assert all(np.isclose(retrieval["retrieval_score"], score).any() for score in served.values())
    funnel.recommend(RecommendRequest(user="no-such-user", k=5))
    assert np.isnan(seen[-1]["retrieval_score"]).all()  # popularity: no retrieval features


def test_k_beyond_the_stage_sizes_is_honoured(funnel):
    config = FunnelConfig(max_per_category=None, rank_candidates=5, prerank_candidates=8)
    wide = Funnel.__new__(Funnel)
    wide.__dict__.update(funnel.__dict__, config=config)
    response = wide.recommend(RecommendRequest(user="12347", k=20))
    assert len(response["items"]) == 20


def test_unknown_user_without_session_is_served_from_popularity(funnel):
    response = funnel.recommend(RecommendRequest(user="no-such-user", k=5))
    assert response["path"] == "popularity" and len(response["items"]) == 5
    assert response["stages"][0]["name"] == "popularity"


def test_cli_recommend_funnel_prints_every_stage(ranked_run):
    result = recjax("recommend", "--workdir", str(ranked_run), "--user", "12347", "--k", "5")
    assert result.returncode == 0, result.stderr  # without --funnel: the two-tower alone
    result = recjax(
        "recommend", "--workdir", str(ranked_run), "--user", "12347", "--k", "5", "--funnel"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("# funnel for user 12347 (personalized;")
    stages = {line.split()[0]: line.split()[1:] for line in lines[2:9]}
    assert [stages[name][0] for name in ("retrieval", "pre_ranking", "ranking", "re_ranking")] == [
        "1,000",
        "200",
        "50",
        "5",
    ]
    header, *rows = lines[9:]
    assert header.split()[:4] == ["rank", "item", "retrieval", "pre_ranking"]
    assert {"purchase", "value", "mmr", "category"} <= set(header.split())
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "4", "5"]
    mmr_column = header.split().index("mmr")
    assert float(rows[0].split()[mmr_column]) == pytest.approx(FunnelConfig().mmr_lambda, abs=1e-4)


def test_export_includes_the_ranker_and_serve_goes_through_the_funnel(ranked_run, tmp_path):
    import httpx

    from recjax.serving.local_server import local_server

    bundle = tmp_path / "bundle"
    result = recjax("export", "--workdir", str(ranked_run), "--out", str(bundle))
    assert result.returncode == 0, result.stderr
    assert (bundle / RANKER_DIR / "ranker.json").is_file() and "ranker" in result.stdout
    log = tmp_path / "requests.jsonl"
    with local_server(bundle, log) as url:
        known = httpx.post(f"{url}/recommend", json={"user": "12347", "k": 5}).json()
        cold = httpx.post(f"{url}/recommend", json={"k": 3}).json()
        health = httpx.get(f"{url}/healthz").json()
    assert known["path"] == "personalized" and len(known["items"]) == 5
    assert [s["name"] for s in known["stages"]] == [
        "user_tower",
        "retrieval",
        "consumed_removed",
        "pre_ranking",
        "ranking",
        "re_ranking",
    ]
    assert {"purchase", "value", "mmr"} <= set(known["items"][0]["scores"])
    assert cold["path"] == "popularity" and len(cold["items"]) == 3
    assert "+" in health["model_version"]  # two-tower + ranker
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == [known["request_id"], cold["request_id"]]
    assert lines[0]["stages"] == known["stages"]
    assert lines[0]["items"][0]["scores"] == known["items"][0]["scores"]
