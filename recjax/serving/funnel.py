"""The served funnel over a bundle: retrieval → pre-ranking → ranking → re-ranking → top k.

    user vector   the bundle's user tower, once per request (`Recommender.user_vector`)
    retrieval     ScaNN over the item embeddings                       → ~1000 candidates
    consumed      items the user already has are dropped: a re-ranking rule, applied
                  here so that they take none of the later stages' slots
    pre-ranking   exact dot products with the same user vector         → ~200
    ranking       the multi-task ranker, every task's score in one forward pass, ordered
                  by value = Σ weight × task score                      → ~50
                  (its inputs include each candidate's exact retrieval score and rank
                  among the retrieved items, as in its training: see
                  `recjax.data.retrieval_negatives`)
    re-ranking    MMR over item embeddings on the value, at most `max_per_category`
                  items per category (`recjax.serving.categories`)     → k

Each stage is a pure function of arrays (catalogue rows in, rows and scores out);
`Funnel` holds the loaded pieces and reports every stage's candidate count and latency.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recjax.data.retrieval_negatives import descending_order, retrieval_features
from recjax.export.bundle import BundleError
from recjax.export.ranker import RANKER_DIR
from recjax.retrieval.scann_index import ScannIndex
from recjax.serving.categories import description_categories
from recjax.serving.ranker import ServedRanker
from recjax.serving.recommender import (
    POPULARITY,
    Query,
    Recommender,
    ServingConfig,
    stage_report,
)
from recjax.serving.requests import RecommendRequest

# Online Retail's heads: a purchase is the goal, an item bought again is worth a little
# more, a cancellation costs as much as a purchase gains; quantity (log units) breaks ties.
ONLINE_RETAIL_WEIGHTS = {
    "purchase": 1.0,
    "repeat_purchase": 0.5,
    "cancellation": -1.0,
    "log_quantity": 0.05,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class FunnelConfig:
    """How many candidates each stage keeps, and the re-ranking rules."""

    retrieval_candidates: int = 1000  # ScaNN neighbours of the user vector.
    prerank_candidates: int = 200  # Best dot products handed to the ranker.
    rank_candidates: int = 50  # Best values handed to re-ranking.
    # value = Σ weight × task score; tasks not named weigh 0. Default: Online Retail's.
    task_weights: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: dict(ONLINE_RETAIL_WEIGHTS)
    )
    # Re-ranking rules cost accuracy on held-out purchases (README, Funnel): these defaults
    # keep the list within ~2-4% NDCG@10 of the value order; λ 0.7 with ≤ 2 costs ~4-6%.
    mmr_lambda: float = 0.9  # MMR: 1 = value order only; lower = more diverse.
    max_per_category: int | None = 3  # Items of one category in the final list (None: any).
    exclude_consumed: bool = True  # Never serve items already in the user's history.


# ----------------------------------------------------------------------- the stages


def retrieve(index: ScannIndex, vector_d: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows [n], approximate scores [n]): ScaNN's n nearest items by dot product."""
    rows_qn, scores_qn = index.search(vector_d[None], n)
    return rows_qn[0], scores_qn[0]


def not_consumed(rows: np.ndarray, consumed: np.ndarray) -> np.ndarray:
    """[m] bool: which `rows` are not among the `consumed` catalogue rows."""
    return ~np.isin(rows, consumed)


def exact_scores(
    item_embeddings_nd: np.ndarray, vector_d: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(exact dot products [m], 0-based rank of each by them, best first) of the items at
    catalogue `rows` [m]: the retrieval score and rank the ranker reads."""
    scores = item_embeddings_nd[rows] @ vector_d
    return scores, descending_order(scores)[1]


def prerank(
    item_embeddings_nd: np.ndarray, vector_d: np.ndarray, rows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(positions into `rows` of the n best, their exact dot products), best first."""
    scores = item_embeddings_nd[rows] @ vector_d
    best = top(scores, n)
    return best, scores[best]


def value(task_scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """[m] Σ_t weight_t × score_t over the weighted tasks."""
    return sum(
        (weight * np.asarray(task_scores[name], np.float64) for name, weight in weights.items()),
        start=np.zeros(len(next(iter(task_scores.values())))),
    )


def top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n largest `scores`, best first (ties: earlier first)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:n]


def mmr(
    relevance: np.ndarray,
    vectors_md: np.ndarray,
    k: int,
    *,
    mmr_lambda: float,
    categories: np.ndarray | None = None,
    max_per_category: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximal marginal relevance: picks k items one at a time, each maximising
    λ·relevance − (1 − λ)·(largest cosine similarity to an item already picked).

    Relevance is min-max scaled to [0, 1] over the candidates first, so λ weighs two
    quantities of the same range. Items whose category already has `max_per_category`
    picks are skipped, so the list can come out shorter than k.

    Returns:
      (positions of the picked items [≤k], their MMR objective when picked).

    References: Carbonell and Goldstein, "The Use of MMR, Diversity-Based Reranking for
    Reordering Documents and Producing Summaries" (SIGIR 1998).
    """
    relevance = np.asarray(relevance, np.float64)
    span = np.ptp(relevance) if len(relevance) else 0.0
    scaled = (relevance - relevance.min()) / span if span > 0 else np.ones_like(relevance)
    norms = np.linalg.norm(vectors_md, axis=1, keepdims=True)
    unit_md = vectors_md / np.where(norms > 0, norms, 1.0)
    similarity_mm = unit_md @ unit_md.T
    redundancy = np.full(len(relevance), -np.inf)  # Max similarity to the picks so far.
    available = np.ones(len(relevance), bool)
    taken: dict[int, int] = {}
    picked, objectives = [], []
    while len(picked) < k and available.any():
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        objective = mmr_lambda * scaled - (1.0 - mmr_lambda) * penalty
        best = int(np.argmax(np.where(available, objective, -np.inf)))
        picked.append(best)
        objectives.append(float(objective[best]))
        available[best] = False
        redundancy = np.maximum(redundancy, similarity_mm[best])
        if categories is not None and max_per_category is not None:
            category = int(categories[best])
            taken[category] = taken.get(category, 0) + 1
            if taken[category] >= max_per_category:
                available &= categories != category
    return np.asarray(picked, np.int64), np.asarray(objectives)


# ----------------------------------------------------------------------- the server


class Funnel:
    """The whole funnel over a bundle that holds a ranker (`recjax train-ranker`, then
    `recjax export`)."""

    def __init__(
        self,
        bundle: str | Path,
        config: FunnelConfig = FunnelConfig(),
        serving: ServingConfig | None = None,
    ):
        # Verifies every file of the bundle, the ranker's too.
        self.recommender = Recommender(bundle, serving or ServingConfig())
        ranker_dir = Path(bundle) / RANKER_DIR
        if not ranker_dir.is_dir():
            raise BundleError(
                f"{bundle} has no ranker: run `recjax train-ranker --workdir RUN`, then export"
            )
        self.ranker = ServedRanker.load(ranker_dir)
        tasks = {task.name for task in self.ranker.tasks}
        if unknown := sorted(set(config.task_weights) - tasks):
            raise ValueError(f"task_weights name {unknown}; the ranker's tasks are {sorted(tasks)}")
        self.config = config
        self.model_version = f"{self.recommender.model_version}+{self.ranker.model_version}"
        self.categories, self.category_names = description_categories(self.recommender.item_text)

    def recommend(
        self,
        request: RecommendRequest,
        *,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """The JSON-ready response (as `Recommender.recommend`'s): items with every stage's
        scores, stages with candidate counts and latency. `timestamp`: when the list is
        shown (unix seconds; default now)."""
        start = time.perf_counter()
        config, recommender = self.config, self.recommender
        # Every stage keeps at least k, so that k items can come out (rules permitting).
        k = request.k
        query, unknown_items = recommender.query(request)
        stages: list[dict[str, Any]] = []
        clock = time.perf_counter()
        if query is None:
            rows = top(recommender.popularity, max(config.retrieval_candidates, k))
            first = recommender.popularity[rows] / max(float(recommender.popularity.sum()), 1.0)
            vector = None
            stages.append(stage_report("popularity", len(rows), clock))
        else:
            vector, cached = recommender.user_vector(query)
            stages.append(stage_report("user_tower", 1, clock, cached=cached))
            clock = time.perf_counter()
            rows, first = retrieve(recommender.index, vector, max(config.retrieval_candidates, k))
            stages.append(stage_report("retrieval", len(rows), clock))
        clock = time.perf_counter()
        if config.exclude_consumed and query is not None:
            keep = not_consumed(rows, self._consumed(query))
        else:
            keep = np.ones(len(rows), bool)
        stages.append(stage_report("consumed_removed", int(keep.sum()), clock))

        clock = time.perf_counter()
        if vector is None:  # No user vector: the popularity order stands in, no retrieval
            # features (the ranker reads their training means).
            exact, ranks = first, np.full(len(rows), np.nan)
        else:  # Ranks among everything retrieved, as the ranker was trained with.
            exact, ranks = exact_scores(recommender.item_embeddings, vector, rows)
        kept = np.flatnonzero(keep)[top(exact[keep], max(config.prerank_candidates, k))]
        prescores = exact[kept]
        retrieval = retrieval_features(
            np.where(np.isnan(ranks[kept]), np.nan, prescores), ranks[kept]
        )
        rows, first = rows[kept], first[kept]
        stages.append(stage_report("pre_ranking", len(rows), clock))

        clock = time.perf_counter()
        now = int(time.time()) if timestamp is None else timestamp
        task_scores = self.ranker.score_items(
            self._ranker_user(query), recommender.catalogue_ids[rows], now, retrieval
        )
        values = value(task_scores, config.task_weights)
        ranked = top(values, max(config.rank_candidates, k))
        stages.append(stage_report("ranking", len(ranked), clock))

        clock = time.perf_counter()
        picked, objectives = mmr(
            values[ranked],
            recommender.item_embeddings[rows[ranked]],
            request.k,
            mmr_lambda=config.mmr_lambda,
            categories=self.categories[rows[ranked]],
            max_per_category=config.max_per_category,
        )
        final = ranked[picked]
        stages.append(stage_report("re_ranking", len(final), clock))

        first_name = "popularity" if query is None else "retrieval"
        items = [
            {
                "item": str(recommender.catalogue_ids[rows[i]]),
                "text": str(recommender.item_text[rows[i]]),
                "category": str(self.category_names[self.categories[rows[i]]]),
                "score": float(objective),
                "scores": {
                    first_name: float(first[i]),
                    "pre_ranking": float(prescores[i]),
                    **{t.name: float(task_scores[t.name][i]) for t in self.ranker.tasks},
                    "value": float(values[i]),
                    "mmr": float(objective),
                },
            }
            for i, objective in zip(final, objectives, strict=True)
        ]
        return {
            "request_id": uuid.uuid4().hex,
            "model_version": self.model_version,
            "user": request.user,
            "path": POPULARITY if query is None else query.path,
            "unknown_recent_items": unknown_items,
            "items": items,
            "stages": stages,
            "latency_ms": (time.perf_counter() - start) * 1e3,
        }

    def _consumed(self, query: Query) -> np.ndarray:
        """Catalogue rows of the items in the query's history window (the user's stored
        recent items plus the request's)."""
        history = np.asarray(query.history)
        return history[history >= self.recommender.items.first_known] - (
            self.recommender.items.first_known
        )

    def _ranker_user(self, query: Query | None) -> np.ndarray:
        """The raw user id for the ranker: a known user's id, else one no vocabulary holds
        (the ranker's out-of-vocabulary row)."""
        users = self.recommender.users
        if query is not None and query.user >= users.first_known:
            return users.ids[query.user - users.first_known]
        return np.asarray("" if users.ids.dtype.kind == "U" else np.iinfo(np.int64).min)
