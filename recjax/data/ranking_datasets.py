"""Multi-task ranking data from four public logs: which tasks each has, and its labels.

| dataset        | tasks (b = binary, r = regression)                         | negatives       |
|----------------|------------------------------------------------------------|-----------------|
| movielens_100k | engaged (rated) b, like (rating >= 4) b, hide (<= 2) b,     | sampled (*)     |
|                | rating r                                                   |                 |
| online_retail  | purchase b, repeat_purchase b, cancellation b,             | sampled (*)     |
|                | log_quantity r                                             |                 |
| open_bandit    | click b (with the display position)                        | logged          |
| ebnerd         | click b, long_dwell (dwell > threshold) b, log_dwell r      | logged (in view)|

(*) Uniformly from the catalogue by default; a ranker trained for a retrieval run's funnel
draws them from that run's retrieved candidates instead (`load_ranking_logs(negatives=)`).

Labels that do not exist are masked, never made negative: a sampled negative has no
rating, no quantity, no like or hide; an article has a dwell only once clicked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np

from recjax.data.event_log import EventLog, EventType
from recjax.data.ranking_examples import Candidates, KeyedTimes, RankingData
from recjax.data.report import OnError
from recjax.data.sources import DataConfig, load_events
from recjax.losses.multitask import TaskSpec

Dataset = Literal["movielens_100k", "online_retail", "open_bandit", "ebnerd"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingDataConfig:
    """Which log, and how it becomes labelled ranking examples."""

    dataset: Dataset  # One of the four datasets above.
    path: str | None = None  # File or folder; None only for the embedded Online Retail.
    on_error: OnError = "raise"  # "skip" counts malformed rows in the load report.
    session_length: int = 20  # The user's last N engaged items fed as the session.
    negatives_per_positive: int = 1  # Catalogue negatives per positive (sampled datasets).
    max_positives: int | None = None  # Keep only the most recent N positives (None: all).
    valid_quantile: float = 0.8  # Examples after this time quantile are validation...
    test_quantile: float = 0.9  # ...and after this one, test.
    like_rating: float = 4.0  # movielens: a rating at or above this is a like.
    hide_rating: float = 2.0  # movielens: a rating at or below this is a hide.
    long_dwell_seconds: float = 30.0  # ebnerd: a dwell above this is a long dwell.
    seed: int = 0  # Negative sampling.


# Side fields that describe the item (the same whichever user it is shown to); every other
# side field describes the request (who, where) and is served with the user's latest value.
ITEM_FIELDS: dict[str, tuple[str, ...]] = {
    "online_retail": ("log_unit_price",),
    "open_bandit": tuple(f"item_feature_{k}" for k in range(4)),
}


@dataclasses.dataclass(frozen=True)
class RankingLogs:
    """A dataset's labelled candidates, the engagement log their history features come
    from, and the tasks it has labels for (before splitting and encoding)."""

    candidates: Candidates
    engaged: EventLog
    tasks: tuple[TaskSpec, ...]


# negatives(positives, engaged, catalogue, always_known) -> positives and negatives: how a
# dataset without logged negatives gets them. `always_known` names the tasks a negative
# has a label for (0); its other tasks are masked.
NegativeSampler = Callable[[Candidates, EventLog, np.ndarray, tuple[str, ...]], Candidates]


def uniform_negatives(config: RankingDataConfig) -> NegativeSampler:
    """`config.negatives_per_positive` items drawn uniformly from the catalogue per
    positive (`with_sampled_negatives`)."""

    def negatives(positives, engaged, catalogue, always_known):
        return with_sampled_negatives(
            positives,
            engaged,
            catalogue,
            per_positive=config.negatives_per_positive,
            always_known=always_known,
            rng=np.random.default_rng(config.seed),
        )

    return negatives


def load_ranking_logs(
    config: RankingDataConfig,
    say=print,
    *,
    keep: Callable[[EventLog], np.ndarray] | None = None,
    negatives: NegativeSampler | None = None,
) -> RankingLogs:
    """Reads the dataset's files (printing the load reports) into candidates and labels.

    `keep(events)` -> [n] bool, if given, filters every log right after reading: e.g. to
    hold out a retrieval run's validation and test events from a ranker trained beside it.
    `negatives` replaces the uniform catalogue negatives of the datasets without logged
    ones (e.g. `recjax.data.retrieval_negatives`: the funnel's own candidates).
    """
    builders = {
        "movielens_100k": _movielens,
        "online_retail": _online_retail,
        "open_bandit": _open_bandit,
        "ebnerd": _ebnerd,
    }
    if config.dataset not in builders:
        raise ValueError(f"Unknown dataset {config.dataset!r}; expected one of {list(builders)}.")

    def load(data_format: str) -> EventLog:
        events = _load(config, data_format, say)
        return events if keep is None else events.take(np.flatnonzero(keep(events)))

    return RankingLogs(
        *builders[config.dataset](config, load, negatives or uniform_negatives(config))
    )


def load_ranking_data(config: RankingDataConfig, say=print) -> RankingData:
    """Reads the dataset's files and builds its examples (printing the load reports)."""
    return build_ranking_data(config, load_ranking_logs(config, say))


def build_ranking_data(config: RankingDataConfig, logs: RankingLogs) -> RankingData:
    """Splits, fits the encoder on and encodes `logs` as `config` says."""
    return RankingData.build(
        config.dataset,
        logs.candidates,
        logs.engaged,
        logs.tasks,
        session_length=config.session_length,
        valid_quantile=config.valid_quantile,
        test_quantile=config.test_quantile,
    )


def _load(config: RankingDataConfig, data_format: str, say) -> EventLog:
    events, report = load_events(
        DataConfig(format=data_format, path=config.path, on_error=config.on_error)
    )
    for line in report.lines():
        say(line)
    return events


def _recent(events: EventLog, limit: int | None) -> EventLog:
    """The `limit` most recent events (all if None), in time order."""
    order = np.argsort(events.timestamp, kind="stable")
    return events.take(order if limit is None else order[-limit:])


def with_sampled_negatives(
    positives: Candidates,
    engaged: EventLog,
    catalogue: np.ndarray,
    *,
    per_positive: int,
    always_known: tuple[str, ...],
    rng: np.random.Generator,
) -> Candidates:
    """`positives` plus `per_positive` uniform catalogue items for each, as negatives.

    A negative copies its positive's user, time and context; the tasks in
    `always_known` get label 0, every other task is masked. Items the user ever
    engaged with are never drawn as negatives (they would be false negatives).
    """
    n = len(positives)
    source = np.repeat(np.arange(n), per_positive)
    items = catalogue[rng.integers(0, len(catalogue), len(source))]
    seen = {(u, i) for u, i in zip(engaged.user.tolist(), engaged.item.tolist(), strict=True)}
    fresh = np.array(
        [
            (u, i) not in seen
            for u, i in zip(positives.user[source].tolist(), items.tolist(), strict=True)
        ],
        dtype=bool,
    )
    source, items = source[fresh], items[fresh]
    negatives = dataclasses.replace(
        positives.take(source),
        item=items,
        labels={name: np.zeros(len(source), np.float32) for name in positives.labels},
        masks={name: np.full(len(source), name in always_known) for name in positives.masks},
    )
    return concatenate(positives, negatives)


def concatenate(a: Candidates, b: Candidates) -> Candidates:
    """The candidates of `a`, then those of `b` (the same fields)."""

    def both(x, y):
        return {name: np.concatenate([x[name], y[name]]) for name in x}

    return Candidates(
        user=np.concatenate([a.user, b.user]),
        item=np.concatenate([a.item, b.item]),
        timestamp=np.concatenate([a.timestamp, b.timestamp]),
        position=None if a.position is None else np.concatenate([a.position, b.position]),
        categorical=both(a.categorical, b.categorical),
        numeric=both(a.numeric, b.numeric),
        labels=both(a.labels, b.labels),
        masks=both(a.masks, b.masks),
    )


def _movielens(config: RankingDataConfig, load, negatives: NegativeSampler):
    ratings = _recent(load("movielens_100k"), None)
    positives = _recent(ratings, config.max_positives)
    rating = positives.value.astype(np.float32)
    ones = np.ones(len(positives), bool)
    candidates = Candidates(
        user=positives.user,
        item=positives.item,
        timestamp=positives.timestamp,
        labels={
            "engaged": np.ones(len(positives), np.float32),
            "like": (rating >= config.like_rating).astype(np.float32),
            "hide": (rating <= config.hide_rating).astype(np.float32),
            "rating": rating,
        },
        masks={name: ones for name in ("engaged", "like", "hide", "rating")},
    )
    candidates = negatives(candidates, ratings, np.unique(ratings.item), ("engaged",))
    tasks = (
        TaskSpec(name="engaged", kind="binary"),
        TaskSpec(name="like", kind="binary"),
        TaskSpec(name="hide", kind="binary"),
        TaskSpec(name="rating", kind="regression"),
    )
    return candidates, ratings, tasks


def _online_retail(config: RankingDataConfig, load, negatives: NegativeSampler):
    events = _recent(load("online_retail"), None)
    purchases = events.of_types((EventType.PURCHASE,))
    cancels = events.of_types((EventType.CANCELLATION,))
    positives = _recent(purchases, config.max_positives)
    # Per (user, item): the time of the next purchase after each one (or never), then
    # whether a cancellation falls between this purchase and the next.
    next_time = _next_time(purchases, positives)
    cancelled = _any_between(cancels, positives, next_time)
    price = _median_by_item(events.item, events.features["unit_price"])
    ones = np.ones(len(positives), bool)
    candidates = Candidates(
        user=positives.user,
        item=positives.item,
        timestamp=positives.timestamp,
        categorical={"country": positives.features["country"]},
        labels={
            "purchase": np.ones(len(positives), np.float32),
            "repeat_purchase": np.isfinite(next_time).astype(np.float32),
            "cancellation": cancelled.astype(np.float32),
            "log_quantity": np.log1p(positives.value).astype(np.float32),
        },
        masks={
            name: ones for name in ("purchase", "repeat_purchase", "cancellation", "log_quantity")
        },
    )
    candidates = negatives(candidates, purchases, np.unique(purchases.item), ("purchase",))
    candidates = dataclasses.replace(
        candidates,
        numeric={**candidates.numeric, "log_unit_price": np.log1p(price(candidates.item))},
    )
    tasks = (
        TaskSpec(name="purchase", kind="binary"),
        TaskSpec(name="repeat_purchase", kind="binary"),
        TaskSpec(name="cancellation", kind="binary"),
        TaskSpec(name="log_quantity", kind="regression"),
    )
    return candidates, purchases, tasks


def _pair_index(events: EventLog, queries: EventLog) -> tuple[KeyedTimes, np.ndarray]:
    """`events` indexed by (user, item) pair and time, and the pair key of each query."""
    _, users = np.unique(np.concatenate([events.user, queries.user]), return_inverse=True)
    _, items = np.unique(np.concatenate([events.item, queries.item]), return_inverse=True)
    keys = users.astype(np.int64) * (items.max(initial=0) + 1) + items
    return KeyedTimes(keys[: len(events)], events.timestamp), keys[len(events) :]


def _next_time(events: EventLog, queries: EventLog) -> np.ndarray:
    """For each query: the first time after it at which `events` has the same (user,
    item) pair; +inf if none."""
    index, keys = _pair_index(events, queries)
    return index.next_time(keys, queries.timestamp)


def _any_between(events: EventLog, queries: EventLog, end: np.ndarray) -> np.ndarray:
    """Whether `events` has the query's (user, item) pair at a time in [query time, end)."""
    index, keys = _pair_index(events, queries)
    end = np.where(np.isfinite(end), end, np.iinfo(np.int64).max // 4).astype(np.int64)
    return index.before(keys, end) > index.before(keys, queries.timestamp)


def _median_by_item(items: np.ndarray, values: np.ndarray):
    """A lookup raw item -> the median of its `values` (0 for unknown items)."""
    unique, codes = np.unique(items, return_inverse=True)
    order = np.lexsort((values, codes))
    starts = np.searchsorted(codes[order], np.arange(len(unique)))
    ends = np.r_[starts[1:], len(order)]
    medians = values[order][(starts + ends - 1) // 2]

    def lookup(query: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(unique, query), 0, len(unique) - 1)
        return np.where(unique[at] == query, medians[at], 0.0)

    return lookup


def _open_bandit(config: RankingDataConfig, load, negatives: NegativeSampler):
    events = _recent(load("open_bandit"), config.max_positives)
    features = events.features
    candidates = Candidates(
        user=events.user,
        item=events.item,
        timestamp=events.timestamp,
        position=features["position"],
        categorical={
            name: features[name]
            for name in (
                *(f"user_feature_{k}" for k in range(4)),
                *(f"item_feature_{k}" for k in (1, 2, 3)),
                "campaign",
            )
        },
        numeric={"item_feature_0": features["item_feature_0"], "affinity": features["affinity"]},
        labels={"click": events.value},
        masks={"click": np.ones(len(events), bool)},
    )
    # The logging policy and its propensities are not features: a new policy serves
    # without them. (They would weight an off-policy estimate; see the README.)
    return candidates, events.take(events.value > 0), (TaskSpec(name="click", kind="binary"),)


def _ebnerd(config: RankingDataConfig, load, negatives: NegativeSampler):
    shown = _recent(load("ebnerd"), config.max_positives)
    history = load("ebnerd_history")
    clicks = shown.take(shown.value > 0)
    engaged = EventLog(
        user=np.concatenate([history.user, clicks.user]),
        item=np.concatenate([history.item, clicks.item]),
        timestamp=np.concatenate([history.timestamp, clicks.timestamp]),
        event_type=np.concatenate([history.event_type, clicks.event_type]),
        value=np.ones(len(history) + len(clicks), np.float32),
    )
    dwell = shown.features["dwell"]
    has_dwell = np.isfinite(dwell)  # Clicked, and the log holds the dwell.
    candidates = Candidates(
        user=shown.user,
        item=shown.item,
        timestamp=shown.timestamp,
        categorical={
            name: shown.features[name]
            for name in ("page", "device_type", "age", "gender", "postcode", "is_subscriber")
        },
        labels={
            "click": shown.value,
            "long_dwell": (np.nan_to_num(dwell) > config.long_dwell_seconds).astype(np.float32),
            "log_dwell": np.log1p(np.nan_to_num(dwell)).astype(np.float32),
        },
        masks={"click": np.ones(len(shown), bool), "long_dwell": has_dwell, "log_dwell": has_dwell},
    )
    tasks = (
        TaskSpec(name="click", kind="binary"),
        TaskSpec(name="long_dwell", kind="binary"),
        TaskSpec(name="log_dwell", kind="regression"),
    )
    return candidates, engaged, tasks
