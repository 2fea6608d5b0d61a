"""The published sequential protocol end to end on a hand-made log: leave-one-out targets,
earlier items removed, full ranking, known NDCG/HR."""

import numpy as np

from recjax.config import EvalConfig
from recjax.data.event_log import EventLog, EventType
from recjax.data.examples import ExampleConfig, RetrievalData
from recjax.data.splits import Role
from recjax.evaluation.retrieval_suite import evaluate_retrieval


def _data() -> RetrievalData:
    # user 1: a b c d e  -> validation d, test e; user 2: b c a -> validation c, test a
    sequences = {1: ["a", "b", "c", "d", "e"], 2: ["b", "c", "a"]}
    users = np.concatenate([[u] * len(s) for u, s in sequences.items()])
    items = np.concatenate([s for s in sequences.values()])
    times = np.concatenate([np.arange(len(s)) for s in sequences.values()])
    log = EventLog(
        user=users.astype(np.int64),
        item=items.astype(str),
        timestamp=times.astype(np.int64),
        event_type=np.full(len(users), EventType.INTERACTION, np.int8),
        value=np.ones(len(users), np.float32),
    )
    config = ExampleConfig(
        positive_events=("INTERACTION",), context_feature=None, text_feature=None
    )
    return RetrievalData.build(log, config)


def _vectors(data: RetrievalData, order: dict[str, list[str]]) -> np.ndarray:
    """Item vectors that make user u's dot-product ranking equal order[u] (1-hot users)."""
    items = np.zeros((data.num_items, 2))
    for column, ranking in enumerate(order.values()):
        for score, item in zip(range(10, 0, -1), ranking, strict=False):
            items[data.items.lookup(np.array([item]))[0], column] = score
    return items


def test_leave_one_out_targets_exclusion_and_known_metrics():
    data = _data()
    test = data.eval_set(Role.TEST)
    assert [list(data.items.raw(t[t >= 0])) for t in test.targets] == [["e"], ["a"]]
    valid = data.eval_set(Role.VALID)
    assert [list(data.items.raw(t[t >= 0])) for t in valid.targets] == [["d"], ["c"]]
    # User 1's model ranks a, b, c (all seen) above e; user 2's ranks b (seen), d, a.
    items = _vectors(data, {"1": ["a", "b", "c", "e", "d"], "2": ["b", "d", "a", "c", "e"]})
    users = np.eye(2)
    config = EvalConfig(ks=(1, 2), exclude_seen=True)
    metrics = evaluate_retrieval(data, test, users, items, config, baselines=False)["two_tower"]
    # Seen items removed: user 1's target e is ranked first, user 2's a second (after d).
    assert metrics["hr@1"] == 0.5 and metrics["hr@2"] == 1.0
    np.testing.assert_allclose(metrics["ndcg@2"], (1.0 + 1 / np.log2(3)) / 2)
    kept = evaluate_retrieval(data, test, users, items, EvalConfig(ks=(1, 5)), baselines=False)[
        "two_tower"
    ]
    # Seen items kept: e is 4th for user 1; a is 3rd for user 2.
    np.testing.assert_allclose(kept["ndcg@5"], (1 / np.log2(5) + 1 / np.log2(4)) / 2)
    assert kept["hr@1"] == 0.0
