"""Training objectives: the two-tower's sampled softmax over in-batch (and extra) negatives,
and the sequence encoders' next-item loss at every position."""

from __future__ import annotations

from typing import Any

import jax

from recjax.data.vocab import PAD
from recjax.losses.next_item import full_softmax_loss, sampled_next_item_loss
from recjax.losses.retrieval import sampled_softmax_loss
from recjax.models.sequence import SequenceEncoder
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


def next_item_loss(
    model: SequenceEncoder, params: Any, batch: dict[str, jax.Array], rng: jax.Array
) -> jax.Array:
    """Mean next-item loss over every real position of a packed batch (`SequenceBatches`),
    with the full or sampled softmax the encoder's config names."""
    hidden_bld, items_nd = model.apply({"params": params}, batch, train=True, rngs={"dropout": rng})
    hidden_td = hidden_bld.reshape(-1, hidden_bld.shape[-1])
    targets_t = batch["targets"].reshape(-1)
    weights_t = (targets_t != PAD).astype(hidden_td.dtype)
    if model.config.loss == "full_softmax":
        return full_softmax_loss(
            hidden_td,
            items_nd,
            targets_t,
            weights_t,
            first_item=model.first_item,
            end_item=model.end_item,
        )
    return sampled_next_item_loss(
        hidden_td,
        items_nd,
        targets_t,
        batch["target_log_q"].reshape(-1),
        weights_t,
        batch.get("negative"),
        batch.get("negative_log_q"),
    )
