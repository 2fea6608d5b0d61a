"""The two-tower training objective: sampled softmax over in-batch (and extra) negatives."""

from __future__ import annotations

from typing import Any

import jax

from recjax.losses.retrieval import sampled_softmax_loss
from recjax.models.two_tower import TwoTower


def two_tower_loss(
    model: TwoTower, params: Any, batch: dict[str, jax.Array], rng: jax.Array, *, temperature: float
) -> jax.Array:
    """Mean sampled-softmax loss of a batch (see `TrainBatches` for its fields)."""
    variables = {"params": params}
    rngs = {"dropout": rng}
    users_bd, items_bd = model.apply(variables, batch, train=True, rngs=rngs)
    negatives = {}
    if "negative" in batch:
        negatives = dict(
            negatives_md=model.apply(
                variables,
                batch["negative"],
                batch["negative_tokens"],
                train=True,
                rngs=rngs,
                method=TwoTower.encode_items,
            ),
            negative_ids_m=batch["negative"],
            negative_log_q_m=batch["negative_log_q"],
        )
    return sampled_softmax_loss(
        users_bd, items_bd, batch["item"], batch["item_log_q"], temperature=temperature, **negatives
    )
