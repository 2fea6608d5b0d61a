"""Next-item objectives for sequence encoders: full softmax or sampled softmax.

Letters: t = token positions (flattened batch rows × positions), d = width,
n = catalogue items, m = uniform negatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from recjax.losses.retrieval import sampled_softmax_loss


def full_softmax_loss(
    hidden_td: jax.Array,
    items_nd: jax.Array,
    targets_t: jax.Array,
    weights_t: jax.Array,
    *,
    first_item: int,
    end_item: int | None = None,
) -> jax.Array:
    """Weighted mean cross-entropy of each target against the whole catalogue.

    Only rows `first_item <= i < end_item` are candidates (not padding, OOV buckets or
    the rows a table is padded with).

    Args:
      hidden_td: query vectors, one per position.
      items_nd: the item table (scores are dot products).
      targets_t: the next item at each position.
      weights_t: 1 for a real position, 0 for padding.
      first_item: index of the first real item in the table.
      end_item: one past the last real item (None: the table's end).
    """
    logits_tn = hidden_td @ items_nd.T
    rows_n = jnp.arange(items_nd.shape[0])
    not_item_n = (rows_n < first_item) | (rows_n >= (end_item or items_nd.shape[0]))
    logits_tn = jnp.where(not_item_n[None, :], -jnp.inf, logits_tn)
    safe_targets_t = jnp.where(weights_t > 0, targets_t, first_item)
    losses_t = optax.softmax_cross_entropy_with_integer_labels(logits_tn, safe_targets_t)
    return jnp.sum(weights_t * losses_t) / jnp.maximum(jnp.sum(weights_t), 1e-9)


def sampled_next_item_loss(
    hidden_td: jax.Array,
    items_nd: jax.Array,
    targets_t: jax.Array,
    target_log_q_t: jax.Array,
    weights_t: jax.Array,
    negatives_m: jax.Array | None = None,
    negative_log_q_m: jax.Array | None = None,
) -> jax.Array:
    """Weighted sampled softmax: each target against the batch's other targets and the
    uniform negatives, logQ-corrected, accidental hits removed (no temperature: the
    encoder's scores are unnormalised dot products)."""
    negatives = {}
    if negatives_m is not None:
        negatives = dict(
            negatives_md=items_nd[negatives_m],
            negative_ids_m=negatives_m,
            negative_log_q_m=negative_log_q_m,
        )
    return sampled_softmax_loss(
        hidden_td,
        items_nd[targets_t],
        targets_t,
        target_log_q_t,
        temperature=1.0,
        weights_b=weights_t,
        **negatives,
    )
