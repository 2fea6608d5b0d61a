"""Sampled softmax for retrieval: in-batch negatives, logQ correction, accidental hits.

Letters: b = batch (queries and their positives), m = extra sampled negatives,
d = embedding width.

References: Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus
Item Recommendations" (RecSys 2019); Yang et al., "Mixed Negative Sampling for
Learning Two-tower Neural Networks in Recommendations" (WWW 2020).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def sampled_softmax_loss(
    queries_bd: jax.Array,
    positives_bd: jax.Array,
    positive_ids_b: jax.Array,
    positive_log_q_b: jax.Array,
    *,
    temperature: float,
    negatives_md: jax.Array | None = None,
    negative_ids_m: jax.Array | None = None,
    negative_log_q_m: jax.Array | None = None,
    remove_accidental_hits: bool = True,
    weights_b: jax.Array | None = None,
) -> jax.Array:
    """Mean cross-entropy of each query's positive against the other candidates.

    Candidates of row i: every positive in the batch (in-batch negatives) and, if
    given, the extra sampled negatives. Each candidate logit is `q·c / temperature
    - log Q(c)`, with `log Q` the log of the expected number of times `c` appears
    among the sampled candidates (logQ correction: popular items are not punished for
    being sampled often). A candidate with the same id as row i's positive (other
    than the positive itself) is an accidental hit and is masked out.

    Args:
      queries_bd: query (user) vectors.
      positives_bd: the positive item vector of each query.
      positive_ids_b: item ids of the positives (for accidental hits).
      positive_log_q_b: log expected count of each positive among the in-batch candidates.
      temperature: softmax temperature.
      negatives_md, negative_ids_m, negative_log_q_m: optional extra negatives
        (e.g. uniformly sampled), their ids and log expected counts.
      remove_accidental_hits: mask candidates equal to the row's positive.
      weights_b: per-query loss weights (0 = a padding query, which is also never a
        candidate for the others); the mean is weighted. None = all 1.
    """
    candidates_cd = positives_bd
    candidate_ids_c = positive_ids_b
    candidate_log_q_c = positive_log_q_b
    if negatives_md is not None:
        if negative_ids_m is None or negative_log_q_m is None:
            raise ValueError("Extra negatives need their ids and log Q.")
        candidates_cd = jnp.concatenate([positives_bd, negatives_md], axis=0)
        candidate_ids_c = jnp.concatenate([positive_ids_b, negative_ids_m], axis=0)
        candidate_log_q_c = jnp.concatenate([positive_log_q_b, negative_log_q_m], axis=0)
    logits_bc = queries_bd @ candidates_cd.T / temperature - candidate_log_q_c[None, :]
    batch = queries_bd.shape[0]
    is_positive_bc = jnp.arange(candidates_cd.shape[0])[None, :] == jnp.arange(batch)[:, None]
    if remove_accidental_hits:
        same_item_bc = candidate_ids_c[None, :] == positive_ids_b[:, None]
        logits_bc = jnp.where(same_item_bc & ~is_positive_bc, -jnp.inf, logits_bc)
    if weights_b is None:
        losses_b = optax.softmax_cross_entropy_with_integer_labels(logits_bc, jnp.arange(batch))
        return losses_b.mean()
    is_padding_c = jnp.zeros(candidates_cd.shape[0], bool).at[:batch].set(weights_b == 0)
    logits_bc = jnp.where(is_padding_c[None, :] & ~is_positive_bc, -jnp.inf, logits_bc)
    losses_b = optax.softmax_cross_entropy_with_integer_labels(logits_bc, jnp.arange(batch))
    return jnp.sum(weights_b * losses_b) / jnp.maximum(jnp.sum(weights_b), 1e-9)
