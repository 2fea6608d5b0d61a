"""Top-k recommendations for known users from a trained model (two-tower or sequence encoder)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from recjax.data.examples import RetrievalData
from recjax.embeddings import item_vectors, user_vectors
from recjax.retrieval.exact import exact_top_k
from recjax.training.trainer import TrainedModel


@dataclasses.dataclass(frozen=True)
class Recommendation:
    item: str  # Raw item id.
    text: str  # Item description (or the id when the data has none).
    score: float  # Dot product of the user and item vectors.


class UnknownUserError(KeyError):
    """A user id that has no events in the training data."""

    def __str__(self) -> str:
        return str(self.args[0])


def parse_user_id(data: RetrievalData, text: str) -> np.ndarray:
    """The raw user id `text` as the vocabulary's dtype; UnknownUserError if impossible."""
    if data.users.ids.dtype.kind == "U":
        return np.asarray([text])  # its own width: never cut to the vocabulary's
    try:
        return np.asarray([int(text)], dtype=data.users.ids.dtype)
    except ValueError:
        raise UnknownUserError(
            f"user id {text!r} is not a valid id for this dataset "
            f"(ids look like {data.users.ids[0]})"
        ) from None


def recommend(
    data: RetrievalData,
    trained: TrainedModel,
    user: str,
    *,
    k: int = 10,
    exclude_seen: bool = False,
) -> list[Recommendation]:
    """The `k` best items for `user` (a raw id as text) after all of their events."""
    raw = parse_user_id(data, user)
    try:
        positions, rows = data.latest_positions(raw)
    except KeyError:
        raise UnknownUserError(
            f"unknown user id {user!r}: not in this dataset "
            f"({len(data.timelines.users):,} users, e.g. "
            f"{', '.join(map(str, data.users.ids[:3]))})"
        ) from None
    params = trained.state.params
    items_nd = item_vectors(trained.model, params, data)
    query_d = user_vectors(
        trained.model, params, data.query_features(positions, rows, events=True)
    )[0]
    excluded = np.arange(data.items.first_known)  # padding and OOV are not items
    if exclude_seen:
        seen = data.timelines.items[data.timelines.offsets[rows[0]] : positions[0]]
        excluded = np.union1d(excluded, seen)
    scores, indices = exact_top_k(
        jnp.asarray(query_d[None]),
        jnp.asarray(items_nd),
        k,
        excluded=jnp.asarray(excluded[None], dtype=jnp.int32),
    )
    scores, indices = np.asarray(scores[0]), np.asarray(indices[0])
    valid = indices >= 0
    return [
        Recommendation(
            item=str(data.items.raw(np.array([i]))[0]), text=str(data.item_text[i]), score=float(s)
        )
        for i, s in zip(indices[valid], scores[valid], strict=True)
    ]
