"""Two-tower retrieval: a user tower and an item tower meeting in one embedding space.

Letters in array names: b = batch, h = history length, t = text tokens, d = width.

References: Covington et al., "Deep Neural Networks for YouTube Recommendations"
(RecSys 2016); Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large
Corpus Item Recommendations" (RecSys 2019).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.layers.embedding import combine_bag


@dataclasses.dataclass(frozen=True, kw_only=True)
class TwoTowerConfig:
    """Sizes of the two towers."""

    kind: Literal["two_tower"] = "two_tower"  # Tells model configs apart in saved JSON.
    embedding_dim: int = 64  # Width of every id/token embedding table.
    hidden_dims: tuple[int, ...] = (256,)  # Hidden layers of each tower's MLP.
    output_dim: int = 64  # Width of the shared user/item space (L2-normalised).
    dropout: float = 0.0  # Dropout on tower inputs during training.
    recent_lengths: tuple[int, ...] = (1, 5)  # Also pool the last few history items alone.


class Tower(nn.Module):
    """MLP from concatenated features to an L2-normalised vector."""

    hidden_dims: tuple[int, ...]
    output_dim: int
    dropout: float

    @nn.compact
    def __call__(self, features_bd: jax.Array, *, train: bool) -> jax.Array:
        x = nn.Dropout(self.dropout, deterministic=not train)(features_bd)
        for width in self.hidden_dims:
            x = nn.gelu(nn.Dense(width)(x))
        x = nn.Dense(self.output_dim)(x)
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


class TwoTower(nn.Module):
    """User tower (user id, pooled history, pooled recent items, context) and item tower
    (item id, text tokens). Recency matters: the last item alone pools separately.

    The item id table is shared: the history is pooled from the same item embeddings
    the item tower reads, so what is learned about an item as a target transfers to
    it as history.
    """

    config: TwoTowerConfig
    num_users: int
    num_items: int
    num_contexts: int
    num_text_buckets: int

    def setup(self) -> None:
        dim = self.config.embedding_dim
        self.user_embedding = nn.Embed(self.num_users, dim, name="user_embedding")
        self.item_embedding = nn.Embed(self.num_items, dim, name="item_embedding")
        self.context_embedding = nn.Embed(max(self.num_contexts, 1), dim, name="context_embedding")
        self.token_embedding = nn.Embed(self.num_text_buckets, dim, name="token_embedding")
        tower = dict(
            hidden_dims=self.config.hidden_dims,
            output_dim=self.config.output_dim,
            dropout=self.config.dropout,
        )
        self.user_tower = Tower(**tower, name="user_tower")
        self.item_tower = Tower(**tower, name="item_tower")

    def encode_users(
        self, user_b: jax.Array, history_bh: jax.Array, context_b: jax.Array, *, train: bool = False
    ) -> jax.Array:
        history_bhd = self.item_embedding(history_bh)
        # Histories are left-padded, so the most recent items are the last columns.
        recent_pools = [
            combine_bag(history_bhd[:, -length:], history_bh[:, -length:], combiner="mean")
            for length in self.config.recent_lengths
        ]
        features_bd = jnp.concatenate(
            [
                self.user_embedding(user_b),
                combine_bag(history_bhd, history_bh, combiner="mean"),
                *recent_pools,
                self.context_embedding(context_b),
            ],
            axis=-1,
        )
        return self.user_tower(features_bd, train=train)

    def encode_items(
        self, item_b: jax.Array, tokens_bt: jax.Array, *, train: bool = False
    ) -> jax.Array:
        features_bd = jnp.concatenate(
            [
                self.item_embedding(item_b),
                combine_bag(self.token_embedding(tokens_bt), tokens_bt, combiner="mean"),
            ],
            axis=-1,
        )
        return self.item_tower(features_bd, train=train)

    def __call__(
        self, batch: dict[str, jax.Array], *, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """(user vectors [b, d], positive item vectors [b, d]) for a training batch."""
        users_bd = self.encode_users(batch["user"], batch["history"], batch["context"], train=train)
        items_bd = self.encode_items(batch["item"], batch["item_tokens"], train=train)
        return users_bd, items_bd
