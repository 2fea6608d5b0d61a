"""Serving-side recommender over a bundle: user vector once per request, then the funnel.

Stages today: user tower (once per request; identical requests within
`cache_seconds` reuse it) → retrieval (ScaNN, `retrieval_candidates`) → pre-ranking
(exact dot products with the same user vector) → top k. Cold start: an unknown user
with session items is served from those items ("session"); with none, from
popularity ("popularity"). Imports no training code: a bundle is all it reads.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from recjax.data.vocab import PAD, Vocabulary
from recjax.export.bundle import read_bundle, unflatten_params
from recjax.retrieval.scann_index import load_scann_index
from recjax.serving.requests import RecommendRequest

PERSONALIZED, SESSION, POPULARITY = "personalized", "session", "popularity"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """Per-request work and reuse."""

    retrieval_candidates: int = 1000  # ScaNN candidates handed to pre-ranking.
    cache_seconds: float = 2.0  # Identical queries this close reuse the user vector (0: off).
    cache_size: int = 10_000  # Most user vectors kept for reuse.


@dataclasses.dataclass(frozen=True)
class Query:
    """User-tower inputs of one request, in vocabulary indices."""

    path: str  # PERSONALIZED or SESSION.
    user: int
    history: tuple[int, ...]  # Exactly history_length items, left-padded.
    context: int


class Recommender:
    """Answers `RecommendRequest`s from a bundle directory."""

    def __init__(self, bundle: str | Path, config: ServingConfig = ServingConfig()):
        contents = read_bundle(bundle)
        self.config = config
        self.model_version = contents.model_version
        self._tower = export.deserialize(bytearray(contents.user_tower))
        self._params = jax.device_put(unflatten_params(contents.user_tower_params))
        vocab = contents.vocab
        self.users = Vocabulary(ids=vocab["users"], num_oov_buckets=int(vocab["users_oov"]))
        self.items = Vocabulary(ids=vocab["items"], num_oov_buckets=int(vocab["items_oov"]))
        self.contexts = Vocabulary(
            ids=vocab["contexts"], num_oov_buckets=int(vocab["contexts_oov"])
        )
        self.catalogue_ids = contents.catalogue_ids
        self.item_embeddings = contents.item_embeddings
        self.item_text = contents.item_text
        self._popular = np.argsort(-contents.popularity, kind="stable")
        self.popularity = contents.popularity
        self._history = contents.user_state["history"]
        self._context = contents.user_state["context"]
        self.index = load_scann_index(contents.scann_dir)
        self._cache: collections.OrderedDict[Query, tuple[float, np.ndarray]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    @property
    def history_length(self) -> int:
        return self._history.shape[1]

    def recommend(self, request: RecommendRequest) -> dict[str, Any]:
        """The JSON-ready response: items with per-stage scores, stages with counts/latency."""
        start = time.perf_counter()
        query, unknown_items = self.query(request)
        if query is None:
            items, stages = self._popular_items(request.k)
            path = POPULARITY
        else:
            items, stages = self._funnel(query, request.k)
            path = query.path
        return {
            "request_id": uuid.uuid4().hex,
            "model_version": self.model_version,
            "user": request.user,
            "path": path,
            "unknown_recent_items": unknown_items,
            "items": items,
            "stages": stages,
            "latency_ms": (time.perf_counter() - start) * 1e3,
        }

    def query(self, request: RecommendRequest) -> tuple[Query | None, list[str]]:
        """The user-tower inputs for `request` (None: popularity) and unknown session items."""
        recent, unknown = self._item_indices(request.recent_items)
        user = _as_ids(self.users, [request.user]) if request.user is not None else None
        known_user = user is not None and bool(self.users.contains(user)[0])
        if known_user:
            user_index = int(self.users.lookup(user)[0])
            history = np.concatenate([self._history[user_index], recent])
            context = int(self._context[user_index])
        elif len(recent):
            user_index = int(self.users.lookup(user)[0]) if user is not None else 1
            history, context = recent, PAD
        else:
            return None, unknown
        if request.context is not None:
            context = int(self.contexts.lookup(_as_ids(self.contexts, [request.context]))[0])
        window = np.zeros(self.history_length, dtype=np.int32)
        kept = history[history != PAD][-self.history_length :]
        window[self.history_length - len(kept) :] = kept
        path = PERSONALIZED if known_user else SESSION
        return Query(path, user_index, tuple(int(i) for i in window), context), unknown

    def user_vector(self, query: Query) -> tuple[np.ndarray, bool]:
        """The user tower's output for `query` (and whether it came from the cache)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(query)
            if cached is not None and now - cached[0] <= self.config.cache_seconds:
                self._cache.move_to_end(query)
                return cached[1], True
        vector = np.asarray(
            self._tower.call(
                self._params,
                np.array([query.user], np.int32),
                np.array([query.history], np.int32),
                np.array([query.context], np.int32),
            )
        )[0]
        if self.config.cache_seconds > 0:
            with self._lock:
                self._cache[query] = (now, vector)
                self._cache.move_to_end(query)
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return vector, False

    def _funnel(self, query: Query, k: int) -> tuple[list[dict], list[dict]]:
        clock = time.perf_counter()
        vector, cached = self.user_vector(query)
        stages = [stage_report("user_tower", 1, clock, cached=cached)]
        clock = time.perf_counter()
        candidates, approximate = self.index.search(vector[None], self.config.retrieval_candidates)
        candidates, approximate = candidates[0], approximate[0]
        stages.append(stage_report("retrieval", len(candidates), clock))
        clock = time.perf_counter()
        exact = self.item_embeddings[candidates] @ vector
        best = np.argsort(-exact, kind="stable")[:k]
        stages.append(stage_report("pre_ranking", len(best), clock))
        items = [
            self._item(
                candidates[i],
                float(exact[i]),
                {"retrieval": float(approximate[i]), "pre_ranking": float(exact[i])},
            )
            for i in best
        ]
        return items, stages

    def _popular_items(self, k: int) -> tuple[list[dict], list[dict]]:
        clock = time.perf_counter()
        best = self._popular[:k]
        share = self.popularity / max(float(self.popularity.sum()), 1.0)
        items = [self._item(i, float(share[i]), {"popularity": float(share[i])}) for i in best]
        return items, [stage_report("popularity", len(best), clock)]

    def _item(self, row: int, score: float, scores: dict[str, float]) -> dict[str, Any]:
        return {
            "item": str(self.catalogue_ids[row]),
            "text": str(self.item_text[row]),
            "score": score,
            "scores": scores,
        }

    def _item_indices(self, raw: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
        """Vocabulary indices of session items (unknown ones dropped, and listed)."""
        if not raw:
            return np.zeros(0, dtype=np.int32), []
        ids = _as_ids(self.items, list(raw))
        known = self.items.contains(ids)
        return self.items.lookup(ids[known]), [
            item for item, ok in zip(raw, known, strict=True) if not ok
        ]


def _as_ids(vocabulary: Vocabulary, texts: list[str]) -> np.ndarray:
    """Request ids (text) as the vocabulary's kind; non-numeric text for an int vocabulary
    becomes an id that cannot match (it is unknown, not an error)."""
    if vocabulary.ids.dtype.kind in "iu":
        return np.array(
            [int(t) if t.lstrip("-").isdigit() else np.iinfo(np.int64).min for t in texts],
            dtype=np.int64,
        )
    return np.asarray(texts, dtype=str)


def stage_report(name: str, candidates: int, started: float, **extra: Any) -> dict[str, Any]:
    """One stage's entry of a response: its name, candidates out, and latency since `started`."""
    return {
        "name": name,
        "candidates": int(candidates),
        "latency_ms": (time.perf_counter() - started) * 1e3,
        **extra,
    }
