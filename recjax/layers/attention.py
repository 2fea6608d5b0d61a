"""Self-attention over event sequences: masks, SASRec's softmax block, HSTU's pointwise block.

Letters in array names: b = batch rows, l = sequence positions (queries), m = positions
(keys), d = width, h = heads.

A row holds one or more users' sequences side by side ("packing"): `segment_bl` numbers
them 1, 2, ... and is 0 on padding. A position attends to earlier-or-equal positions of
its own segment only, so packed users never see each other and nothing sees the future.
Both blocks sow their [b, heads, l, m] attention weights as `intermediates` (read them
with `apply(..., mutable=["intermediates"])`; otherwise nothing is stored).

References: Kang & McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018);
Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential
Transducers for Generative Recommendations" (ICML 2024) — HSTU.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Small initial weights (BERT/RecBole's N(0, 0.02)): with residual streams of unit scale,
# every block starts close to the identity.
WEIGHT_INIT = nn.initializers.normal(stddev=0.02)


def causal_segment_mask(segment_bl: jax.Array) -> jax.Array:
    """[b, l, m] True where query l may attend key m: same non-padding segment and m <= l.

    Padding queries attend to themselves only, so every row of the mask has a True
    (no softmax over an empty set, no NaN) while real positions never see padding.
    """
    length = segment_bl.shape[-1]
    causal_lm = jnp.tril(jnp.ones((length, length), dtype=bool))
    same_blm = segment_bl[:, :, None] == segment_bl[:, None, :]
    real_bl1 = (segment_bl != 0)[:, :, None]
    return (same_blm & real_bl1 & causal_lm) | jnp.eye(length, dtype=bool)


def log_time_buckets(gap: jax.Array, num_buckets: int) -> jax.Array:
    """Bucket of a non-negative time gap (seconds) on a log2 scale: 0 for 0, then
    1 + floor(log2(gap)), capped at `num_buckets - 1`."""
    gap = jnp.maximum(gap.astype(jnp.float32), 0.0)
    bucket = jnp.where(gap >= 1.0, 1 + jnp.floor(jnp.log2(jnp.maximum(gap, 1.0))), 0.0)
    return jnp.minimum(bucket, num_buckets - 1).astype(jnp.int32)


class FeedForward(nn.Module):
    """Position-wise GELU MLP with dropout."""

    width: int
    dropout: float

    @nn.compact
    def __call__(self, x_bld: jax.Array, *, train: bool) -> jax.Array:
        hidden = nn.gelu(nn.Dense(self.width, kernel_init=WEIGHT_INIT)(x_bld))
        hidden = nn.Dropout(self.dropout, deterministic=not train)(hidden)
        return nn.Dense(x_bld.shape[-1], kernel_init=WEIGHT_INIT)(hidden)


class SASRecBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then + FFN(LN(·))."""

    num_heads: int
    dropout: float
    attention_dropout: float

    @nn.compact
    def __call__(self, x_bld: jax.Array, mask_blm: jax.Array, *, train: bool) -> jax.Array:
        drop = nn.Dropout(self.dropout, deterministic=not train)
        attended = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dropout_rate=self.attention_dropout,
            deterministic=not train,
            kernel_init=WEIGHT_INIT,
        )(nn.LayerNorm()(x_bld), mask=mask_blm[:, None], sow_weights=True)
        x_bld = x_bld + drop(attended)
        width = x_bld.shape[-1]
        return x_bld + drop(FeedForward(width, self.dropout)(nn.LayerNorm()(x_bld), train=train))


class RelativeBias(nn.Module):
    """HSTU's relative attention bias: a learned scalar per relative-position bucket
    (how many positions back), plus one per log2 time-gap bucket when times are given."""

    max_distance: int
    num_time_buckets: int

    @nn.compact
    def __call__(self, batch: int, length: int, age_bl: jax.Array | None) -> jax.Array:
        """[b, l, m] bias; `age_bl` is each event's age (seconds before the latest event)."""
        distance_lm = np.arange(length)[:, None] - np.arange(length)[None, :]
        bucket_lm = np.clip(distance_lm, 0, self.max_distance - 1)
        position_bias = self.param(
            "position_bias", nn.initializers.zeros_init(), (self.max_distance,)
        )
        bias_blm = jnp.broadcast_to(position_bias[bucket_lm], (batch, length, length))
        if age_bl is None:
            return bias_blm
        time_bias = self.param("time_bias", nn.initializers.zeros_init(), (self.num_time_buckets,))
        # The key happened `age_m - age_l` seconds before the query (>= 0 for causal pairs).
        gap_blm = age_bl[:, None, :] - age_bl[:, :, None]
        return bias_blm + time_bias[log_time_buckets(gap_blm, self.num_time_buckets)]


class HSTUBlock(nn.Module):
    """Hierarchical Sequential Transduction Unit: U, V, Q, K = SiLU(W·LN(x));
    A = SiLU(QKᵀ + relative bias) / n over allowed keys (pointwise, not softmax);
    x + W_o · dropout(LN(A V) ⊙ U)."""

    num_heads: int
    dropout: float
    max_length: int
    num_time_buckets: int

    @nn.compact
    def __call__(
        self, x_bld: jax.Array, mask_blm: jax.Array, age_bl: jax.Array | None, *, train: bool
    ) -> jax.Array:
        batch, length, width = x_bld.shape
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by {self.num_heads} heads.")
        head_dim = width // self.num_heads
        uvqk = nn.silu(nn.Dense(4 * width, kernel_init=WEIGHT_INIT)(nn.LayerNorm()(x_bld)))
        u_bld, v_bld, q_bld, k_bld = jnp.split(uvqk, 4, axis=-1)

        def heads(t_bld: jax.Array) -> jax.Array:
            return t_bld.reshape(batch, length, self.num_heads, head_dim)

        logits_bhlm = jnp.einsum("blhk,bmhk->bhlm", heads(q_bld), heads(k_bld))
        bias_blm = RelativeBias(self.max_length, self.num_time_buckets)(batch, length, age_bl)
        weights_bhlm = nn.silu(logits_bhlm + bias_blm[:, None]) / self.max_length
        weights_bhlm = jnp.where(mask_blm[:, None], weights_bhlm, 0.0)
        self.sow("intermediates", "attention_weights", weights_bhlm)
        attended_bhld = jnp.einsum("bhlm,bmhk->blhk", weights_bhlm, heads(v_bld))
        attended_bld = attended_bhld.reshape(batch, length, width)
        gated_bld = nn.LayerNorm()(attended_bld) * u_bld
        gated_bld = nn.Dropout(self.dropout, deterministic=not train)(gated_bld)
        return x_bld + nn.Dense(width, kernel_init=WEIGHT_INIT)(gated_bld)
