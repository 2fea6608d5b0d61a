"""User and item vectors of a trained model (two-tower or sequence encoder), computed in
fixed-size jitted batches."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from recjax.data.examples import RetrievalData
from recjax.models.sequence import SequenceEncoder
from recjax.models.two_tower import TwoTower

Model = TwoTower | SequenceEncoder


@functools.partial(jax.jit, static_argnums=0)
def _encode_items(model: Model, params: Any, items, tokens) -> jax.Array:
    return model.apply({"params": params}, items, tokens, method="encode_items")


@functools.partial(jax.jit, static_argnums=0)
def _encode_users(model: Model, params: Any, features: dict[str, jax.Array]) -> jax.Array:
    events = {}
    if isinstance(model, SequenceEncoder):
        events = dict(
            history_age_bl=features.get("history_age"),
            history_event_type_bl=features.get("history_event_type"),
        )
    return model.apply(
        {"params": params},
        features["user"],
        features["history"],
        features["context"],
        **events,
        method="encode_users",
    )


def item_vectors(
    model: Model, params: Any, data: RetrievalData, *, batch_size: int = 4096
) -> np.ndarray:
    """[num_items, d] vectors of every item index (padding and OOV rows included)."""
    items = np.arange(data.num_items, dtype=np.int32)
    return _in_batches(
        lambda rows: _encode_items(model, params, items[rows], data.item_tokens[rows]),
        data.num_items,
        batch_size,
    )


def user_vectors(
    model: Model, params: Any, features: dict[str, np.ndarray], *, batch_size: int = 1024
) -> np.ndarray:
    """[b, d] query vectors from user-tower features (`RetrievalData.query_features`; a
    sequence encoder with time or event-type features needs them with `events=True`)."""
    return _in_batches(
        lambda rows: _encode_users(model, params, {k: v[rows] for k, v in features.items()}),
        len(features["user"]),
        batch_size,
    )


def _in_batches(encode, count: int, batch_size: int) -> np.ndarray:
    """Runs `encode(rows)` on fixed-size row batches (the last padded) and concatenates."""
    batch = max(1, min(batch_size, count))
    outputs = []
    for start in range(0, count, batch):
        rows = np.arange(start, start + batch).clip(max=count - 1)
        outputs.append(np.asarray(encode(rows))[: min(batch, count - start)])
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
