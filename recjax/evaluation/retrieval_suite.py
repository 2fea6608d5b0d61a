"""Full-ranking evaluation of a retrieval model next to its baselines, on one held-out role."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from recjax.config import EvalConfig
from recjax.data.examples import EvalSet, RetrievalData
from recjax.data.splits import Role
from recjax.evaluation.baselines import fit_cooccurrence, popularity_scores
from recjax.evaluation.full_ranking import evaluate_full_ranking


def limited_eval_set(data: RetrievalData, role: Role, config: EvalConfig) -> EvalSet:
    """The role's queries, cut to `config.max_users` when set."""
    queries = data.eval_set(role)
    if config.max_users is None:
        return queries
    keep = slice(0, config.max_users)
    return EvalSet(
        positions=queries.positions[keep], targets=queries.targets[keep], seen=queries.seen[keep]
    )


@jax.jit
def _dot_scores(users_bd: jax.Array, items_nd: jax.Array, not_item_n: jax.Array) -> jax.Array:
    return jnp.where(not_item_n[None, :], -jnp.inf, users_bd @ items_nd.T)


def evaluate_retrieval(
    data: RetrievalData,
    queries: EvalSet,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    config: EvalConfig,
    *,
    model_name: str = "two_tower",
    baselines: bool = True,
    progress: bool = False,
    label: str = "",
) -> dict[str, dict[str, float]]:
    """Metrics of the model (under `model_name`) and, with `baselines`, of most-popular and
    last-item co-occurrence on `queries`.

    Padding and OOV indices are never candidates. With `config.exclude_seen`, items the
    user had before the query are removed from every model's candidates.
    """
    not_item_n = np.arange(data.num_items) < data.items.first_known
    excluded = queries.seen if config.exclude_seen else None
    users_qd, items_nd = jnp.asarray(user_vectors), jnp.asarray(item_vectors)
    scorers = {model_name: lambda rows: _dot_scores(users_qd[rows], items_nd, not_item_n)}
    if baselines:
        scorers |= _baseline_scorers(data, queries, config, not_item_n)
    return {
        name: evaluate_full_ranking(
            score,
            queries.targets,
            excluded,
            ks=config.ks,
            batch_size=config.batch_size,
            progress=progress,
            desc=f"{label}{name}",
        )
        for name, score in scorers.items()
    }


def _baseline_scorers(
    data: RetrievalData, queries: EvalSet, config: EvalConfig, not_item_n: np.ndarray
) -> dict:
    """Score functions of most-popular and last-item co-occurrence."""
    train = data.roles == Role.TRAIN
    popularity_n = popularity_scores(data.timelines.items[train], data.num_items)
    cooccurrence = _fit_cooccurrence(data, train, config.cooccurrence_window)
    starts_q = data.timelines.offsets[data.timelines.row_of(queries.positions)]
    last_item_q = np.where(
        queries.positions > starts_q, data.timelines.items[np.maximum(queries.positions - 1, 0)], -1
    )
    return {
        "popularity": lambda rows: _masked(
            np.broadcast_to(popularity_n, (len(rows), len(popularity_n))), not_item_n
        ),
        "cooccurrence": lambda rows: _masked(cooccurrence.scores(last_item_q[rows]), not_item_n),
    }


def _masked(scores_bn: np.ndarray, not_item_n: np.ndarray) -> jax.Array:
    return jnp.where(not_item_n[None, :], -jnp.inf, jnp.asarray(scores_bn))


def _fit_cooccurrence(data: RetrievalData, train: np.ndarray, window: int):
    timeline = data.timelines.timeline_of_position()[train]
    counts = np.bincount(timeline, minlength=len(data.timelines.users))
    return fit_cooccurrence(
        np.r_[0, np.cumsum(counts)],
        data.timelines.items[train],
        num_items=data.num_items,
        window=window,
    )
