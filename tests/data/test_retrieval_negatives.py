import numpy as np

from recjax.data.event_log import EventLog
from recjax.data.ranking_examples import Candidates, RankingData
from recjax.data.ranking_serving import ServingFeatures
from recjax.data.retrieval_negatives import (
    RETRIEVAL_RANK,
    RETRIEVAL_SCORE,
    RetrievalNegativesConfig,
    descending_order,
    retrieval_features,
    with_retrieval_negatives,
)
from recjax.losses.multitask import TaskSpec

# Six items on a line: a query (1, 0) ranks them 10, 11, 12, 13, 14, 15.
CATALOGUE = np.array([13, 11, 15, 10, 14, 12])
VECTORS = np.array([[0.1, 0], [0.9, 0], [-1, 0], [1, 0], [0, 1], [0.8, 0]])


def _positives() -> Candidates:
    return Candidates(
        user=np.array([1, 1, 2, 3]),
        item=np.array([10, 12, 15, 99]),  # 15: outside the window; 99: not in the catalogue
        timestamp=np.array([5, 5, 7, 8]),
        categorical={"country": np.array(["uk", "uk", "fr", "de"])},
        labels={"buy": np.ones(4, np.float32), "qty": np.array([2, 3, 4, 5], np.float32)},
        masks={"buy": np.ones(4, bool), "qty": np.ones(4, bool)},
    )


def test_descending_order():
    order, ranks = descending_order(np.array([[0.5, 2.0, 1.0, 2.0]]))
    np.testing.assert_array_equal(order, [[1, 3, 2, 0]])  # ties: earlier first
    np.testing.assert_array_equal(ranks, [[3, 0, 2, 1]])


def test_negatives_come_from_the_window_and_never_from_the_basket():
    config = RetrievalNegativesConfig(window=3, hard_per_positive=2, random_per_positive=2)
    queries = np.array([[1.0, 0.0]] * 4)
    out = with_retrieval_negatives(
        _positives(), queries, VECTORS, CATALOGUE, config=config, always_known=("buy",)
    )
    positive = out.masks["qty"]
    # The two positives of user 1's basket are kept, first and in order; 15 (rank 5 of a
    # window of 3) and 99 (no retrieval score) are dropped.
    np.testing.assert_array_equal(out.item[positive], [10, 12])
    np.testing.assert_array_equal(positive, np.arange(len(out)) < 2)
    np.testing.assert_array_equal(out.labels["qty"][:2], [2, 3])
    negatives = out.take(~positive)
    assert set(negatives.item) <= {11, 13, 14, 15}  # never 10 or 12: bought in the basket
    # The window (10, 11, 12) less the basket leaves one hard negative per positive.
    assert list(negatives.item).count(11) >= 2
    np.testing.assert_array_equal(negatives.labels["buy"], 0)
    assert negatives.masks["buy"].all() and not negatives.masks["qty"].any()
    np.testing.assert_array_equal(negatives.user, 1)
    np.testing.assert_array_equal(negatives.categorical["country"], "uk")
    # Retrieval features: the exact score and log(1 + rank) of each example's item.
    rank = {10: 0, 11: 1, 12: 2, 13: 3, 14: 4, 15: 5}
    score = dict(zip(CATALOGUE, VECTORS[:, 0], strict=True))
    np.testing.assert_allclose(out.numeric[RETRIEVAL_SCORE], [score[i] for i in out.item])
    np.testing.assert_allclose(out.numeric[RETRIEVAL_RANK], [np.log1p(rank[i]) for i in out.item])


def test_serving_encodes_the_retrieval_features_as_training_does():
    events = _positives().take(np.arange(3))
    config = RetrievalNegativesConfig(window=6, hard_per_positive=1, random_per_positive=0)
    examples = with_retrieval_negatives(
        events,
        np.array([[1.0, 0.0]] * 3),
        VECTORS,
        CATALOGUE,
        config=config,
        always_known=("buy",),
    )
    engaged = EventLog(
        user=events.user,
        item=events.item,
        timestamp=events.timestamp,
        event_type=np.zeros(3, np.int8),
        value=np.ones(3, np.float32),
    )
    data = RankingData.build(
        "tiny",
        examples,
        engaged,
        (TaskSpec(name="buy", kind="binary"),),
        session_length=2,
        valid_quantile=0.9,
        test_quantile=0.95,
    )
    assert data.encoder.numeric_names[-2:] == (RETRIEVAL_SCORE, RETRIEVAL_RANK)
    features = ServingFeatures.build(data.encoder, examples, engaged)
    assert RETRIEVAL_SCORE not in features.user_fields  # per request, never per user
    items = np.array([11, 13])
    request = retrieval_features(np.array([0.9, 0.1]), np.array([1, 3]))
    served = features.encode(data.encoder, np.array(2), items, 100, request)
    expected = data.encoder.encode(
        Candidates(
            user=np.array([2, 2]),
            item=items,
            timestamp=np.full(2, 100),
            categorical={"country": np.array(["fr", "fr"])},
            numeric=request,
        ),
        engaged,
    )
    for name in expected:
        np.testing.assert_allclose(served[name], expected[name], err_msg=name)
    # Unknown retrieval features (the popularity path) are the training mean: 0.
    unknown = features.encode(data.encoder, np.array(2), items, 100)
    np.testing.assert_allclose(unknown["numeric"][:, -2:], 0.0)
