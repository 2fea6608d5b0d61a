import numpy as np
import pytest

from recjax.data.event_log import EventLog, EventType
from recjax.data.ranking_datasets import RankingDataConfig, load_ranking_data
from recjax.data.ranking_examples import Candidates, KeyedTimes, RankingData, last_before
from recjax.data.splits import Role
from recjax.data.vocab import PAD
from recjax.losses.multitask import TaskSpec


def test_last_before_takes_only_strictly_earlier_events():
    keys = np.array([1, 1, 1, 2, 1])
    times = np.array([10, 20, 30, 5, 20])
    values = np.array([11, 12, 13, 21, 14])
    session, counts = last_before(
        keys, times, values, np.array([1, 1, 1, 2, 3]), np.array([20, 21, 100, 5, 50]), 3
    )
    np.testing.assert_array_equal(counts, [1, 3, 4, 0, 0])
    np.testing.assert_array_equal(
        session,
        [[PAD, PAD, 11], [11, 12, 14], [12, 14, 13], [PAD, PAD, PAD], [PAD, PAD, PAD]],
    )


def test_keyed_times_next_time():
    index = KeyedTimes(np.array([0, 0, 1]), np.array([5, 9, 7]))
    np.testing.assert_array_equal(
        index.next_time(np.array([0, 0, 0, 1, 2]), np.array([1, 5, 9, 0, 0])),
        [5, 9, np.inf, 7, np.inf],
    )


def _tiny_events() -> EventLog:
    return EventLog(
        user=np.array([1, 1, 1, 2, 2]),
        item=np.array([10, 11, 12, 10, 13]),
        timestamp=np.array([100, 200, 300, 150, 400]),
        event_type=np.zeros(5, np.int8),
        value=np.ones(5, np.float32),
    )


def test_build_encodes_history_without_leakage():
    events = _tiny_events()
    candidates = Candidates(
        user=events.user,
        item=events.item,
        timestamp=events.timestamp,
        categorical={"colour": np.array(["a", "b", "a", "c", "b"])},
        labels={"click": np.ones(5, np.float32), "dwell": np.array([1, 9, 2, 3, 4], np.float32)},
        masks={"click": np.ones(5, bool), "dwell": np.array([1, 0, 1, 1, 1], bool)},
    )
    data = RankingData.build(
        "tiny",
        candidates,
        events,
        (TaskSpec(name="click", kind="binary"), TaskSpec(name="dwell", kind="regression")),
        session_length=2,
        valid_quantile=0.5,
        test_quantile=0.75,
    )
    inputs, items = data.examples.inputs, data.encoder.items
    # User 1 at t=300 saw items 10 (t=100) and 11 (t=200) before; nothing at or after.
    np.testing.assert_array_equal(inputs["session"][2], items.lookup(np.array([10, 11])))
    np.testing.assert_array_equal(inputs["session"][0], [PAD, PAD])
    # Missing labels are zeroed and masked.
    assert data.examples.labels["dwell"][1] == 0 and not data.examples.masks["dwell"][1]
    # Time cut: 200 is the 0.5 quantile, 300 the 0.75 one.
    np.testing.assert_array_equal(data.examples.roles, [0, 1, 2, 0, 2])
    # Categorical fields share one table: colour, hour, weekday rows never collide.
    categorical = inputs["categorical"]
    assert categorical.shape == (5, 3)
    assert len(set(categorical[:, 0]) & set(categorical[:, 1])) == 0
    assert categorical.max() < data.encoder.features.num_categorical_rows
    assert data.encoder.numeric_names == ("user_engagements", "item_engagements")
    train_numeric = inputs["numeric"][data.examples.roles == Role.TRAIN]
    np.testing.assert_allclose(train_numeric.mean(axis=0), 0.0, atol=1e-6)


def test_movielens_labels_and_masked_negatives(shared_data):
    config = RankingDataConfig(
        dataset="movielens_100k", path=str(shared_data("movielens-100k")), max_positives=2_000
    )
    data = load_ranking_data(config, say=lambda _: None)
    labels, masks = data.examples.labels, data.examples.masks
    rated = masks["rating"]
    assert rated.sum() == 2_000
    np.testing.assert_array_equal(labels["engaged"], rated.astype(np.float32))
    np.testing.assert_array_equal(labels["like"][rated], labels["rating"][rated] >= 4)
    np.testing.assert_array_equal(labels["hide"][rated], labels["rating"][rated] <= 2)
    # Sampled negatives: engaged = 0 is known; like, hide and rating are missing.
    for task in ("like", "hide", "rating"):
        np.testing.assert_array_equal(masks[task], rated)
    assert masks["engaged"].all()
    assert 1_500 < (~rated).sum() <= 2_000  # Items the user rated are never negatives.


def test_online_retail_outcomes(shared_data):
    data = load_ranking_data(
        RankingDataConfig(dataset="online_retail", max_positives=20_000), say=lambda _: None
    )
    labels, masks = data.examples.labels, data.examples.masks
    bought = masks["log_quantity"]
    assert bought.sum() == 20_000
    assert labels["purchase"][bought].all() and not labels["purchase"][~bought].any()
    assert 0 < labels["cancellation"][bought].mean() < 0.1
    # The most recent purchases: few are bought again before the log ends (censored).
    assert 0.01 < labels["repeat_purchase"][bought].mean() < 0.6
    assert (labels["log_quantity"][bought] > 0).all()
    assert not masks["cancellation"][~bought].any()


def test_ebnerd_dwell_only_on_clicks(shared_data):
    config = RankingDataConfig(dataset="ebnerd", path=str(shared_data("ebnerd-test-sample")))
    data = load_ranking_data(config, say=lambda _: None)
    labels, masks = data.examples.labels, data.examples.masks
    assert masks["click"].sum() == 10_848
    assert masks["log_dwell"].sum() == 1_019
    assert labels["click"][masks["log_dwell"]].all()
    np.testing.assert_array_equal(
        labels["long_dwell"][masks["long_dwell"]],
        np.expm1(labels["log_dwell"][masks["log_dwell"]]) > 30.0,
    )


def test_open_bandit_positions(shared_data):
    config = RankingDataConfig(
        dataset="open_bandit", path=str(shared_data("open-bandit-dataset-small"))
    )
    data = load_ranking_data(config, say=lambda _: None)
    assert data.encoder.features.num_positions == 3
    assert set(np.unique(data.examples.inputs["position"])) == {1, 2, 3}
    assert data.examples.labels["click"].sum() == 287


def test_unknown_dataset_and_bad_quantiles():
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_ranking_data(RankingDataConfig(dataset="kuairand"))
    events = _tiny_events()
    candidates = Candidates(user=events.user, item=events.item, timestamp=events.timestamp)
    with pytest.raises(ValueError, match="quantile"):
        RankingData.build(
            "x", candidates, events, (), session_length=1, valid_quantile=0.9, test_quantile=0.5
        )
    assert EventType.INTERACTION == 0
