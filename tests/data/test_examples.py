"""Retrieval examples on hand-made events: eval sets, query features, statistics, item text."""

import numpy as np
import pytest

from recjax.data.event_log import EventLog, EventType
from recjax.data.examples import ExampleConfig, RetrievalData, _padded_groups
from recjax.data.hashing import hash_to_buckets
from recjax.data.splits import Role
from recjax.data.vocab import PAD

P, C = EventType.PURCHASE, EventType.CANCELLATION
# (user, item, time, country, description, type). Times 1..14 for the positives, so the
# temporal split's cuts are hand-computable: quantile 0.5 = 7.5 → valid from t=7,
# quantile 0.75 = 10.75 → test from t=10 (the cut is truncated to an int).
ROWS = [
    (1, "A", 1, "UK", "WHITE HANGING HEART", P),
    (1, "B", 2, "UK", "RED HEART LANTERN", P),
    (2, "A", 3, "Germany", "WHITE HANGING HEART", P),
    (1, "C", 4, "UK", "white hanging heart", P),
    (2, "B", 5, "Germany", "RED HEART LANTERN", P),
    (3, "D", 6, "UK", "", P),
    (1, "A", 7, "UK", "WHITE HANGING HEART T-LIGHT HOLDER", P),  # later text: ignored
    (2, "C", 8, "Germany", "white hanging heart", P),
    (1, "E", 9, "UK", "Jumbo bag, red!", P),
    (2, "C", 10, "Germany", "white hanging heart", P),
    (1, "E", 11, "UK", "Jumbo bag, red!", P),
    (3, "A", 12, "UK", "WHITE HANGING HEART", P),
    (1, "F", 13, "France", "pack of 12 pencils in tube", P),
    (1, "E", 14, "France", "Jumbo bag, red!", P),  # E again in user 1's test period
    (4, "G", 15, "Spain", "cancelled thing", C),  # not a positive: no user 4, no item G
]
# Vocabularies (1 OOV bucket): users 1→2, 2→3, 3→4; items A→2 B→3 C→4 D→5 E→6 F→7;
# countries France→2, Germany→3, UK→4.
# Timelines:  user 1: positions 0..7 items A B C A E E F E  roles T T T V V X X X
#             user 2: positions 8..11 items A B C C         roles T T V X
#             user 3: positions 12..13 items D A            roles T X
A, B, CC, D, E, F = 2, 3, 4, 5, 6, 7
FRANCE, GERMANY, UK = 2, 3, 4


def make_events(rows=ROWS) -> EventLog:
    users, items, times, countries, texts, types = zip(*rows, strict=True)
    return EventLog(
        user=np.array(users),
        item=np.array(items),
        timestamp=np.array(times, dtype=np.int64),
        event_type=np.array(types, dtype=np.int8),
        value=np.ones(len(rows), dtype=np.float32),
        features={"country": np.array(countries), "description": np.array(texts)},
    )


TEMPORAL = ExampleConfig(
    split="temporal",
    temporal_valid_quantile=0.5,
    temporal_test_quantile=0.75,
    history_length=3,
    text_tokens=4,
)


@pytest.fixture
def data() -> RetrievalData:
    return RetrievalData.build(make_events(), TEMPORAL)


def test_build_layout(data):
    np.testing.assert_array_equal(data.users.ids, [1, 2, 3])
    np.testing.assert_array_equal(data.items.ids, ["A", "B", "C", "D", "E", "F"])
    np.testing.assert_array_equal(data.contexts.ids, ["France", "Germany", "UK"])
    np.testing.assert_array_equal(data.timelines.offsets, [0, 8, 12, 14])
    np.testing.assert_array_equal(
        data.timelines.items, [A, B, CC, A, E, E, F, E, A, B, CC, CC, D, A]
    )
    np.testing.assert_array_equal(data.roles, [0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 1, 2, 0, 2])
    np.testing.assert_array_equal(data.context, [UK] * 6 + [FRANCE] * 2 + [GERMANY] * 4 + [UK] * 2)
    np.testing.assert_array_equal(data.train_positions(), [0, 1, 2, 8, 9, 12])
    np.testing.assert_array_equal(data.train_counts, [0, 0, 2, 2, 1, 1, 0, 0])
    assert data.num_items == 8


def test_eval_set_temporal_several_targets(data):
    test = data.eval_set(Role.TEST)
    np.testing.assert_array_equal(test.positions, [5, 11, 13])
    # User 1 bought E twice in the test period: one target, not two.
    np.testing.assert_array_equal(test.targets, [[E, F], [CC, -1], [A, -1]])
    # Seen: unique items strictly before the query; user 3's A (the target) is not seen.
    np.testing.assert_array_equal(test.seen, [[A, B, CC, E], [A, B, CC, -1], [D, -1, -1, -1]])
    assert test.targets.dtype == np.int32 and test.seen.dtype == np.int32

    valid = data.eval_set(Role.VALID)
    np.testing.assert_array_equal(valid.positions, [3, 10])  # user 3 has no validation event
    np.testing.assert_array_equal(valid.targets, [[A, E], [CC, -1]])
    np.testing.assert_array_equal(valid.seen, [[A, B, CC], [A, B, -1]])


def test_eval_set_leave_last_out():
    data = RetrievalData.build(make_events(), ExampleConfig(history_length=3))
    test = data.eval_set(Role.TEST)
    np.testing.assert_array_equal(test.positions, [7, 11, 13])
    np.testing.assert_array_equal(test.targets, [[E], [CC], [A]])
    # User 1's target E was also bought before: seen holds it (a repeat purchase).
    np.testing.assert_array_equal(
        test.seen, [[A, B, CC, E, F], [A, B, CC, -1, -1], [D, -1, -1, -1, -1]]
    )
    valid = data.eval_set(Role.VALID)
    np.testing.assert_array_equal(valid.positions, [6, 10])  # user 3 has only two events
    np.testing.assert_array_equal(valid.targets, [[F], [CC]])
    np.testing.assert_array_equal(valid.seen, [[A, B, CC, E], [A, B, -1, -1]])


def test_eval_set_of_a_role_nobody_has_is_empty():
    rows = [(1, "A", 1, "UK", "", P), (1, "B", 2, "UK", "", P), (2, "A", 3, "UK", "", P)]
    data = RetrievalData.build(make_events(rows), ExampleConfig())
    valid = data.eval_set(Role.VALID)  # leave-last-out: nobody has 3 events
    assert valid.positions.shape == (0,)
    assert len(valid.targets) == 0 and len(valid.seen) == 0
    np.testing.assert_array_equal(data.eval_set(Role.TEST).targets, [[B]])


def test_padded_groups():
    groups = np.array([0, 0, 0, 2, 2])
    values = np.array([7, 5, 7, 1, 1])
    np.testing.assert_array_equal(
        _padded_groups(groups, values, 3), [[7, 5, 7], [-1, -1, -1], [1, 1, -1]]
    )
    np.testing.assert_array_equal(
        _padded_groups(groups, values, 3, unique=True), [[5, 7], [-1, -1], [1, -1]]
    )
    np.testing.assert_array_equal(
        _padded_groups(np.zeros(0, int), np.zeros(0, int), 2), [[-1], [-1]]
    )


def test_query_features_at_positions(data):
    features = data.query_features(np.array([5, 11, 13, 8]))
    np.testing.assert_array_equal(features["user"], [2, 3, 4, 3])
    np.testing.assert_array_equal(
        features["history"], [[CC, A, E], [A, B, CC], [PAD, PAD, D], [PAD, PAD, PAD]]
    )
    np.testing.assert_array_equal(features["context"], [UK, GERMANY, UK, GERMANY])
    assert all(f.dtype == np.int32 for f in features.values())


def test_latest_positions_query_after_all_events(data):
    positions, rows = data.latest_positions(np.array([3, 1]))
    np.testing.assert_array_equal(positions, [14, 8])
    np.testing.assert_array_equal(rows, [2, 0])
    features = data.query_features(positions, rows)
    np.testing.assert_array_equal(features["user"], [4, 2])
    np.testing.assert_array_equal(features["history"], [[PAD, D, A], [E, F, E]])
    # The context of the user's last event (user 1 was last seen in France).
    np.testing.assert_array_equal(features["context"], [UK, FRANCE])


def test_latest_positions_unknown_user_raises(data):
    with pytest.raises(KeyError):
        data.latest_positions(np.array([1, 99]))
    with pytest.raises(KeyError):
        data.latest_positions(np.array([4]))  # only a cancellation: not in the data
    no_oov = RetrievalData.build(make_events(), ExampleConfig(num_oov_buckets=0))
    with pytest.raises(KeyError):
        no_oov.latest_positions(np.array([99]))


def test_latest_positions_string_users_are_not_truncated():
    rows = [
        ("ann", "A", 1, "UK", "", P),
        ("ann", "B", 2, "UK", "", P),
        ("bob", "C", 3, "UK", "", P),
    ]
    data = RetrievalData.build(make_events(rows), ExampleConfig())
    positions, rows_ = data.latest_positions(np.array(["bob", "ann"]))
    np.testing.assert_array_equal(positions, [3, 2])
    np.testing.assert_array_equal(rows_, [1, 0])
    with pytest.raises(KeyError):  # "annie" must not be cut to the vocabulary's width, "ann"
        data.latest_positions(np.array(["annie"]))


def test_statistics(data):
    assert data.statistics() == {
        "users": 3,
        "items": 6,
        "positive_events": 14,
        "train_events": 6,
        "valid_events": 3,
        "test_events": 5,
        "median_events_per_user": 4.0,  # lengths 8, 4, 2
        "density": pytest.approx(14 / 18),
    }


def test_item_text_and_tokens(data):
    np.testing.assert_array_equal(
        data.item_text,
        [
            "<pad>",
            "<oov 0>",
            "WHITE HANGING HEART",
            "RED HEART LANTERN",
            "white hanging heart",
            "",
            "Jumbo bag, red!",
            "pack of 12 pencils in tube",
        ],
    )
    tokens = data.item_tokens
    assert tokens.shape == (8, 4) and tokens.dtype == np.int32

    def token(word):
        return 1 + int(hash_to_buckets(np.array([word]), 8191)[0])

    np.testing.assert_array_equal(tokens[:2], 0)  # padding and OOV rows
    np.testing.assert_array_equal(tokens[A], [token("white"), token("hanging"), token("heart"), 0])
    np.testing.assert_array_equal(tokens[CC], tokens[A])  # same words, other case
    np.testing.assert_array_equal(tokens[B], [token("red"), token("heart"), token("lantern"), 0])
    np.testing.assert_array_equal(tokens[D], 0)  # empty description
    np.testing.assert_array_equal(tokens[E], [token("jumbo"), token("bag"), token("red"), 0])
    np.testing.assert_array_equal(
        tokens[F], [token("pack"), token("of"), token("12"), token("pencils")]
    )  # cut to text_tokens
    # A word is the same token in every description (whatever the other words' lengths).
    assert tokens[A, 2] == tokens[B, 1]
    assert tokens[B, 0] == tokens[E, 2]
    assert ((tokens[2:] >= 0) & (tokens[2:] < 8192)).all()


def test_no_text_or_context_feature():
    data = RetrievalData.build(
        make_events(), ExampleConfig(context_feature=None, text_feature=None)
    )
    np.testing.assert_array_equal(data.context, np.zeros(14))
    np.testing.assert_array_equal(data.item_tokens, 0)
    np.testing.assert_array_equal(data.item_text[2:], ["A", "B", "C", "D", "E", "F"])
    assert len(data.contexts) == 1  # only padding


def test_no_positive_events_raises():
    with pytest.raises(ValueError, match="No events"):
        RetrievalData.build(make_events(ROWS[-1:]), ExampleConfig())
