"""Packed training sequences: every training target once, in order, nothing held out leaks."""

import numpy as np
import pytest

from recjax.data.event_log import EventLog, EventType
from recjax.data.examples import ExampleConfig, RetrievalData
from recjax.data.pipeline import BatchConfig
from recjax.data.sequence_batches import SequenceBatches
from recjax.data.sources import DataConfig, load_events
from recjax.data.splits import Role


def _log(sequences: dict[int, list[int]]) -> EventLog:
    users = np.concatenate([[user] * len(items) for user, items in sequences.items()])
    items = np.concatenate(list(sequences.values()))
    times = np.concatenate([np.arange(len(items)) * 10 for items in sequences.values()])
    return EventLog(
        user=users.astype(np.int64),
        item=items.astype(np.int64),
        timestamp=times.astype(np.int64),
        event_type=np.full(len(users), EventType.INTERACTION, np.int8),
        value=np.ones(len(users), np.float32),
    )


def _data(sequences, history_length=4) -> RetrievalData:
    config = ExampleConfig(
        positive_events=("INTERACTION",),
        context_feature=None,
        text_feature=None,
        history_length=history_length,
    )
    return RetrievalData.build(_log(sequences), config)


def _pairs(batches: SequenceBatches, data: RetrievalData) -> list[tuple[int, ...]]:
    """(user raw id, input raw items..., target raw item) for every real position."""
    pairs = []
    for step in range(batches.steps_per_epoch):
        batch = batches(step)
        for row in range(batch["items"].shape[0]):
            for segment in set(batch["segment"][row]) - {0}:
                cells = np.flatnonzero(batch["segment"][row] == segment)
                np.testing.assert_array_equal(batch["position"][row, cells], np.arange(len(cells)))
                inputs = data.items.raw(batch["items"][row, cells])
                targets = data.items.raw(batch["targets"][row, cells])
                np.testing.assert_array_equal(inputs[1:], targets[:-1])  # next-item shift
                pairs.append((*inputs, targets[-1]))
    return pairs


def test_every_training_target_once_and_held_out_items_never():
    sequences = {1: [10, 11, 12, 13, 14], 2: [20, 21, 22], 3: [30, 31, 32, 33, 34, 35, 36]}
    data = _data(sequences, history_length=4)
    batches = SequenceBatches(data, BatchConfig(batch_size=2), max_length=4)
    # Leave-last-out keeps each user's last two items out of training; user 2 keeps one
    # training item, which has no next item to learn.
    assert sorted(_pairs(batches, data)) == [(10, 11, 12), (30, 31, 32, 33, 34)]
    assert batches.num_targets == 2 + 4


def test_long_sequences_are_cut_into_windows_from_the_end():
    data = _data({1: list(range(100, 112))}, history_length=4)  # 10 train items, 9 targets
    batches = SequenceBatches(data, BatchConfig(batch_size=4), max_length=4)
    windows = sorted(_pairs(batches, data))
    assert windows == [(100, 101), (101, 102, 103, 104, 105), (105, 106, 107, 108, 109)]
    assert batches.num_targets == 9


def test_batches_are_deterministic_per_step_and_padded_to_full_size():
    data = _data({u: list(range(10 * u, 10 * u + 6)) for u in range(1, 8)})
    batches = SequenceBatches(data, BatchConfig(batch_size=3, seed=5), max_length=4)
    first, again = batches(1), batches(1)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    # 7 users x 3 training inputs: one per row of 4, so 3 steps and a last batch with one
    # real row and two empty ones.
    assert (batches.num_rows, batches.steps_per_epoch) == (7, 3)
    last = batches(2)
    assert last["items"].shape == (3, 4)
    assert (last["segment"][0] > 0).sum() == 3 and not last["segment"][1:].any()
    assert not last["targets"][1:].any()


def test_uniform_negatives_and_log_q(shared_data):
    path = shared_data("s3rec-seqrec/LastFM.txt")
    data = RetrievalData.build(
        load_events(DataConfig(format="seqrec", path=str(path))).events,
        ExampleConfig(positive_events=("INTERACTION",), context_feature=None, text_feature=None),
    )
    config = BatchConfig(batch_size=8, num_uniform_negatives=50)
    batches = SequenceBatches(data, config, max_length=50)
    batch = batches(0)
    assert batch["negative"].shape == (50,)
    assert batch["negative"].min() >= data.items.first_known
    real = batch["targets"] != 0
    np.testing.assert_allclose(
        batch["target_log_q"][real], batches.log_expected_count[batch["targets"][real]]
    )
    # Every training position of the real file is a target exactly once per epoch.
    train_per_user = np.bincount(
        data.timelines.timeline_of_position()[data.roles == Role.TRAIN],
        minlength=len(data.timelines.users),
    )
    assert batches.num_targets == int(np.maximum(train_per_user - 1, 0).sum())
    total = sum(
        int((batches(step)["targets"] != 0).sum()) for step in range(batches.steps_per_epoch)
    )
    assert total == batches.num_targets


def test_no_training_pairs_is_a_clear_error():
    data = _data({1: [1, 2, 3], 2: [4, 5, 6]})
    with pytest.raises(ValueError, match="nothing to learn from"):
        SequenceBatches(data, BatchConfig(batch_size=2), max_length=4)


def test_history_events_align_with_history():
    data = _data({1: [10, 11, 12, 13, 14]}, history_length=4)
    features = data.query_features(np.array([4]), events=True)
    np.testing.assert_array_equal(data.items.raw(features["history"][0]), [10, 11, 12, 13])
    np.testing.assert_array_equal(features["history_age"][0], [30, 20, 10, 0])
    short = data.query_features(np.array([2]), events=True)
    np.testing.assert_array_equal(short["history_age"][0], [0, 0, 10, 0])
