"""TrainBatches: pure function of (seed, step), epochs cover every position once, logQ."""

import numpy as np
import pytest

from recjax.data.event_log import EventLog, EventType
from recjax.data.examples import ExampleConfig, RetrievalData
from recjax.data.pipeline import BatchConfig, TrainBatches
from recjax.data.splits import Role

NUM_USERS, EVENTS_PER_USER, BATCH = 6, 5, 4
CONFIG = ExampleConfig(history_length=3, context_feature=None, text_feature=None)


def make_data(items_per_user: list[list[int]]) -> RetrievalData:
    users = np.repeat(np.arange(len(items_per_user)), [len(i) for i in items_per_user])
    items = np.concatenate([np.asarray(i) for i in items_per_user])
    n = len(items)
    events = EventLog(
        user=users.astype(np.int64),
        item=items.astype(np.int64),
        timestamp=np.arange(n, dtype=np.int64),
        event_type=np.full(n, EventType.PURCHASE, dtype=np.int8),
        value=np.ones(n, dtype=np.float32),
    )
    return RetrievalData.build(events, CONFIG)


@pytest.fixture(scope="module")
def distinct() -> RetrievalData:
    """Every event a different item, so an item names its timeline position."""
    ids = np.arange(NUM_USERS * EVENTS_PER_USER).reshape(NUM_USERS, EVENTS_PER_USER)
    return make_data(ids.tolist())


def position_of(data: RetrievalData, items: np.ndarray) -> np.ndarray:
    order = np.argsort(data.timelines.items)
    return order[np.searchsorted(data.timelines.items[order], items)]


def test_epoch_covers_every_training_position_once(distinct):
    batches = TrainBatches(distinct, BatchConfig(batch_size=BATCH))
    train = distinct.train_positions()
    assert len(train) == NUM_USERS * 3  # leave-last-out holds 2 of 5 events per user
    assert batches.steps_per_epoch == 18 // BATCH == 4
    for epoch in range(3):
        steps = range(epoch * 4, (epoch + 1) * 4)
        positions = np.concatenate([position_of(distinct, batches(s)["item"]) for s in steps])
        assert len(np.unique(positions)) == 16  # no repeats inside an epoch
        assert set(positions) <= set(train)  # and nothing held out
        assert (distinct.roles[positions] == Role.TRAIN).all()


def test_batches_are_pure_functions_of_seed_and_step(distinct):
    config = BatchConfig(batch_size=BATCH, seed=3)
    first, fresh = TrainBatches(distinct, config), TrainBatches(distinct, config)
    steps = [0, 5, 1, 9, 5, 0]  # out of order, repeated, across epochs
    for step in steps:
        a, b = first(step), fresh(step)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} at step {step}")
    # A restart at step 6 continues exactly as the uninterrupted run does.
    resumed = TrainBatches(distinct, config)
    for step in range(6, 10):
        np.testing.assert_array_equal(resumed(step)["item"], first(step)["item"])


def test_epochs_and_seeds_shuffle_differently(distinct):
    batches = TrainBatches(distinct, BatchConfig(batch_size=BATCH))

    def epoch_items(b, epoch):
        return np.concatenate([b(s)["item"] for s in range(epoch * 4, epoch * 4 + 4)])

    epoch0, epoch1 = epoch_items(batches, 0), epoch_items(batches, 1)
    assert not np.array_equal(epoch0, epoch1)
    other_seed = TrainBatches(distinct, BatchConfig(batch_size=BATCH, seed=1))
    assert not np.array_equal(epoch_items(other_seed, 0), epoch0)


def test_batch_features_match_their_positions(distinct):
    batches = TrainBatches(distinct, BatchConfig(batch_size=BATCH))
    for step in range(8):
        batch = batches(step)
        positions = position_of(distinct, batch["item"])
        rows = distinct.timelines.row_of(positions)
        np.testing.assert_array_equal(batch["user"], distinct.timelines.users[rows])
        np.testing.assert_array_equal(batch["history"], distinct.timelines.history(positions, 3))
        np.testing.assert_array_equal(batch["item_tokens"], distinct.item_tokens[batch["item"]])


def test_batch_shapes_are_fixed(distinct):
    batches = TrainBatches(distinct, BatchConfig(batch_size=BATCH, num_uniform_negatives=5))
    shapes = {
        "user": (BATCH,),
        "history": (BATCH, 3),
        "context": (BATCH,),
        "item": (BATCH,),
        "item_tokens": (BATCH, CONFIG.text_tokens),
        "item_log_q": (BATCH,),
        "negative": (5,),
        "negative_tokens": (5, CONFIG.text_tokens),
        "negative_log_q": (5,),
    }
    for step in range(12):
        batch = batches(step)
        assert {key: value.shape for key, value in batch.items()} == shapes
        assert batch["item_log_q"].dtype == np.float32
        assert batch["history"].dtype == np.int32 and batch["user"].dtype == np.int32


def test_log_q_is_log_expected_count_per_batch():
    # Each user: A A B, then two held out (X, Y). Training counts: A=8, B=4 of 12.
    data = make_data([[100, 100, 200, 300 + u, 400 + u] for u in range(4)])
    a, b = data.items.lookup(np.array([100, 200]))
    assert data.train_counts[a] == 8 and data.train_counts[b] == 4
    batches = TrainBatches(data, BatchConfig(batch_size=4))
    for step in range(6):
        batch = batches(step)
        expected = np.where(batch["item"] == a, np.log(8 / 12 * 4), np.log(4 / 12 * 4))
        np.testing.assert_allclose(batch["item_log_q"], expected, rtol=1e-6)


def test_uniform_negatives(distinct):
    config = BatchConfig(batch_size=BATCH, num_uniform_negatives=64, seed=7)
    batches = TrainBatches(distinct, config)
    first_known, num_items = distinct.items.first_known, distinct.num_items
    assert (first_known, num_items) == (2, 32)
    seen = []
    for step in range(10):
        negatives = batches(step)["negative"]
        assert negatives.dtype == np.int32
        assert negatives.min() >= first_known and negatives.max() < num_items
        np.testing.assert_array_equal(negatives, TrainBatches(distinct, config)(step)["negative"])
        np.testing.assert_allclose(batches(step)["negative_log_q"], np.log(64 / 30), rtol=1e-6)
        seen.append(negatives)
    assert not np.array_equal(seen[0], seen[1])
    counts = np.bincount(np.concatenate(seen), minlength=num_items)
    assert counts[:first_known].sum() == 0  # never padding or OOV
    assert (counts[first_known:] > 0).all()  # 640 draws over 30 items reach every one


def test_too_little_data_raises(distinct):
    with pytest.raises(ValueError, match="18 training examples"):
        TrainBatches(distinct, BatchConfig(batch_size=19))
    assert TrainBatches(distinct, BatchConfig(batch_size=18)).steps_per_epoch == 1
