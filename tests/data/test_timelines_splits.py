"""Timelines and splits: order, tie-breaks, history windows, roles, and no leakage on retail."""

import dataclasses

import numpy as np
import pytest

from recjax.data.event_log import EventLog, EventType
from recjax.data.examples import ExampleConfig, RetrievalData
from recjax.data.sources.online_retail import read_online_retail
from recjax.data.splits import Role, leave_last_out, temporal_cut
from recjax.data.timelines import UserTimelines
from recjax.data.vocab import PAD, Vocabulary

TRAIN, VALID, TEST = Role.TRAIN, Role.VALID, Role.TEST

# Source rows, deliberately out of user order, with ties in time inside a user.
#            row: 0   1   2   3   4   5   6   7   8   9
USERS = np.array([20, 10, 20, 10, 30, 20, 10, 40, 40, 10])
ITEMS = np.array(["b", "a", "c", "c", "a", "a", "b", "d", "b", "d"])
TIMES = np.array([5, 3, 5, 1, 9, 2, 3, 4, 4, 7])
# Users: PAD, OOV, 10→2, 20→3, 30→4, 40→5. Items: PAD, OOV, a→2, b→3, c→4, d→5.
# user 10: rows 3(t1) 1(t3) 6(t3) 9(t7)  → positions 0..3, items c a b d
# user 20: rows 5(t2) 0(t5) 2(t5)        → positions 4..6, items a b c
# user 30: row 4(t9)                     → position 7,     item a
# user 40: rows 7(t4) 8(t4)              → positions 8..9, items d b (row order, not item order)


def make_events(users=USERS, items=ITEMS, times=TIMES) -> EventLog:
    n = len(users)
    return EventLog(
        user=np.asarray(users),
        item=np.asarray(items),
        timestamp=np.asarray(times, dtype=np.int64),
        event_type=np.full(n, EventType.PURCHASE, dtype=np.int8),
        value=np.ones(n, dtype=np.float32),
    )


@pytest.fixture
def timelines() -> UserTimelines:
    events = make_events()
    return UserTimelines.build(events, Vocabulary.build(events.user), Vocabulary.build(events.item))


def test_timelines_order_ties_and_offsets(timelines):
    np.testing.assert_array_equal(timelines.users, [2, 3, 4, 5])
    np.testing.assert_array_equal(timelines.offsets, [0, 4, 7, 8, 10])
    np.testing.assert_array_equal(timelines.source_rows, [3, 1, 6, 9, 5, 0, 2, 4, 7, 8])
    np.testing.assert_array_equal(timelines.items, [4, 2, 3, 5, 2, 3, 4, 2, 5, 3])
    np.testing.assert_array_equal(timelines.timestamps, [1, 3, 3, 7, 2, 5, 5, 9, 4, 4])
    np.testing.assert_array_equal(timelines.lengths, [4, 3, 1, 2])
    assert timelines.num_events == 10
    assert timelines.offsets.dtype == np.int64 and timelines.items.dtype == np.int32
    np.testing.assert_array_equal(timelines.timeline_of_position(), [0, 0, 0, 0, 1, 1, 1, 2, 3, 3])
    np.testing.assert_array_equal(
        timelines.row_of(np.array([0, 3, 4, 6, 7, 8, 9])), [0, 0, 1, 1, 2, 3, 3]
    )


def test_ties_break_by_source_row_not_by_item():
    # Same events, the two tied rows of user 40 swapped in the source: their order flips.
    users, items = USERS.copy(), ITEMS.copy()
    items[[7, 8]] = items[[8, 7]]
    events = make_events(users, items)
    swapped = UserTimelines.build(
        events, Vocabulary.build(events.user), Vocabulary.build(events.item)
    )
    np.testing.assert_array_equal(swapped.items[8:], [3, 5])  # b then d now
    np.testing.assert_array_equal(swapped.source_rows[8:], [7, 8])


def test_empty_event_log_gives_empty_timelines():
    events = make_events(np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, np.int64))
    empty = UserTimelines.build(
        events, Vocabulary.build(events.user), Vocabulary.build(events.item)
    )
    assert empty.num_events == 0 and len(empty.users) == 0
    np.testing.assert_array_equal(empty.offsets, [0])


def test_history_windows(timelines):
    positions = np.array([0, 1, 3, 4, 6, 7, 9])
    np.testing.assert_array_equal(
        timelines.history(positions, 2),
        [
            [PAD, PAD],  # first event of user 10: nothing before
            [PAD, 4],
            [2, 3],  # last two before position 3, not position 3 itself (item d=5)
            [PAD, PAD],  # user 20 starts here: user 10's items must not leak in
            [2, 3],
            [PAD, PAD],  # user 30's only event
            [PAD, 5],
        ],
    )
    np.testing.assert_array_equal(timelines.history(np.array([3]), 5), [[PAD, PAD, 4, 2, 3]])
    np.testing.assert_array_equal(timelines.history(np.array([3]), 1), [[3]])
    assert timelines.history(positions, 2).dtype == np.int32


def test_history_after_all_events_needs_the_row(timelines):
    # Position 4 is one past user 10's end: with rows=[0] it means "after all of user 10".
    np.testing.assert_array_equal(
        timelines.history(np.array([4, 10]), 5, rows=np.array([0, 3])),
        [[PAD, 4, 2, 3, 5], [PAD, PAD, PAD, 5, 3]],
    )
    # Without the row, position 4 is user 20's first event.
    np.testing.assert_array_equal(timelines.history(np.array([4]), 5), [[PAD] * 5])


def test_leave_last_out(timelines):
    roles = leave_last_out(timelines)
    assert roles.dtype == np.int8
    np.testing.assert_array_equal(
        roles,
        [
            TRAIN,
            TRAIN,
            VALID,
            TEST,  # user 10: 4 events
            TRAIN,
            VALID,
            TEST,  # user 20: 3 events
            TRAIN,  # user 30: 1 event, nothing held out
            TRAIN,
            TEST,  # user 40: 2 events, one test, no validation
        ],
    )


def test_temporal_cut_boundaries(timelines):
    # timestamps [1, 3, 3, 7, 2, 5, 5, 9, 4, 4]; valid from t=4, test from t=7 (inclusive).
    np.testing.assert_array_equal(
        temporal_cut(timelines, valid_start=4, test_start=7),
        [TRAIN, TRAIN, TRAIN, TEST, TRAIN, VALID, VALID, TEST, VALID, VALID],
    )
    np.testing.assert_array_equal(
        temporal_cut(timelines, valid_start=5, test_start=5),
        [TRAIN, TRAIN, TRAIN, TEST, TRAIN, TEST, TEST, TEST, TRAIN, TRAIN],
    )
    everything_train = temporal_cut(timelines, valid_start=10, test_start=10)
    assert (everything_train == TRAIN).all()
    with pytest.raises(ValueError, match="valid_start"):
        temporal_cut(timelines, valid_start=8, test_start=7)


# --- The real embedded data: no leakage, deterministic. ---


@pytest.fixture(scope="module")
def retail_events() -> EventLog:
    return read_online_retail().events


@pytest.fixture(scope="module")
def retail(retail_events) -> RetrievalData:
    return RetrievalData.build(retail_events, ExampleConfig())


@pytest.fixture(scope="module")
def retail_test(retail):
    return retail.eval_set(Role.TEST)


def history_positions(data: RetrievalData, positions: np.ndarray, rows=None) -> np.ndarray:
    """The flat positions (not items) the history features read; -1 where padded."""
    as_positions = dataclasses.replace(
        data.timelines, items=np.arange(1, data.timelines.num_events + 1, dtype=np.int32)
    )
    return as_positions.history(positions, data.config.history_length, rows) - 1


def test_retail_test_queries_see_only_the_past(retail, retail_test):
    timelines, test = retail.timelines, retail_test
    assert len(test.positions) > 4000
    seen = history_positions(retail, test.positions)
    padded = seen < 0
    assert (seen < test.positions[:, None]).all()
    # Every history position belongs to the query's own user.
    query_rows = np.broadcast_to(timelines.row_of(test.positions)[:, None], seen.shape)
    np.testing.assert_array_equal(timelines.row_of(seen[~padded]), query_rows[~padded])
    # And they are exactly the history_length positions just before the query.
    length = retail.config.history_length
    expected = test.positions[:, None] - length + np.arange(length)
    np.testing.assert_array_equal(seen[~padded], expected[~padded])
    starts = timelines.offsets[timelines.row_of(test.positions)]
    np.testing.assert_array_equal(padded, expected < starts[:, None])
    # The features the model gets are the items at those positions.
    features = retail.query_features(test.positions)
    np.testing.assert_array_equal(
        features["history"], np.where(padded, PAD, timelines.items[np.maximum(seen, 0)])
    )


def test_retail_held_out_positions_are_each_users_last(retail, retail_test):
    timelines, roles, test = retail.timelines, retail.roles, retail_test
    lengths, ends = timelines.lengths, timelines.offsets[1:]
    np.testing.assert_array_equal(test.positions, ends[lengths >= 2] - 1)
    np.testing.assert_array_equal(np.flatnonzero(roles == TEST), ends[lengths >= 2] - 1)
    np.testing.assert_array_equal(np.flatnonzero(roles == VALID), ends[lengths >= 3] - 2)
    valid = retail.eval_set(Role.VALID)
    np.testing.assert_array_equal(valid.positions, ends[lengths >= 3] - 2)
    assert (lengths == 1).any()  # single-event users exist and stay in training
    assert (roles[ends[lengths == 1] - 1] == TRAIN).all()


def test_retail_training_precedes_held_out(retail):
    timelines, roles = retail.timelines, retail.roles
    row = timelines.timeline_of_position()
    first_held_out = np.full(len(timelines.users), np.iinfo(np.int64).max)
    held = np.flatnonzero(roles != TRAIN)
    np.minimum.at(first_held_out, row[held], held)
    train = np.flatnonzero(roles == TRAIN)
    assert (train < first_held_out[row[train]]).all()
    # In time too: sorting put no training event after a held-out one.
    first_held_time = np.full(len(timelines.users), np.iinfo(np.int64).max)
    np.minimum.at(first_held_time, row[held], timelines.timestamps[held])
    assert (timelines.timestamps[train] <= first_held_time[row[train]]).all()


def test_retail_build_is_deterministic(retail, retail_events):
    again = RetrievalData.build(retail_events, ExampleConfig())
    np.testing.assert_array_equal(again.roles, retail.roles)
    np.testing.assert_array_equal(again.timelines.source_rows, retail.timelines.source_rows)
    np.testing.assert_array_equal(again.timelines.items, retail.timelines.items)
