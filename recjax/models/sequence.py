"""Sequence encoders over a user's ordered events: SASRec, HSTU and a bag-of-events baseline.

Letters in array names: b = batch rows, l = positions, d = width, n = items.

One module, three `architecture`s sharing the item table and the input layer, so a
results table that lists all three shows what order (and HSTU's pointwise attention)
buys. The encoder's output at a position is that user's query vector for the next
item; scores are dot products with the same item vectors the inputs read (tied weights).
With `item_features`, an item's vector is its id row plus the mean of its side-feature
token rows (attributes such as category and brand, or hashed text): items that share
attributes start close, which helps the rarely seen ones.

As a user tower it takes the two-tower's query features (`encode_users(user, history,
context)`; a left-padded history ending with the latest event), so evaluation, ScaNN
retrieval, export and serving work unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.data.vocab import PAD
from recjax.layers.attention import (
    HSTUBlock,
    SASRecBlock,
    causal_segment_mask,
    log_time_buckets,
)
from recjax.layers.embedding import combine_bag

Architecture = Literal["sasrec", "hstu", "bag_of_events"]
ARCHITECTURES: tuple[str, ...] = ("sasrec", "hstu", "bag_of_events")
EMBEDDING_INIT = nn.initializers.normal(stddev=0.02)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SequenceEncoderConfig:
    """A next-item sequence encoder and its training objective."""

    kind: Literal["sequence"] = "sequence"  # Tells configs apart in saved JSON.
    architecture: Architecture = "sasrec"
    embedding_dim: int = 64  # Width of item embeddings and hidden states.
    num_layers: int = 2  # Attention blocks (bag_of_events: none).
    num_heads: int = 2
    feedforward_dim: int = 256  # SASRec blocks' MLP width.
    dropout: float = 0.2  # On embeddings, residual branches and MLPs.
    attention_dropout: float = 0.2  # On SASRec attention weights.
    time_features: bool = False  # Time-gap embeddings (+ HSTU time bias) from timestamps.
    event_type_features: bool = False  # Embed each event's type (click, purchase...).
    item_features: bool = False  # Add each item's pooled side-feature tokens to its vector.
    num_time_buckets: int = 32  # log2-second buckets of time gaps.
    num_event_types: int = 8  # Rows of the event-type table (>= the EventType values used).
    # Scores: None = dot products of hidden states and item rows (as SASRec); a float =
    # cosine similarities divided by this temperature (queries and items L2-normalised).
    temperature: float | None = None
    # "full_softmax": cross-entropy over the whole catalogue at every position;
    # "sampled_softmax": in-batch targets + uniform negatives with logQ correction,
    # for catalogues too large to score at every position.
    loss: Literal["full_softmax", "sampled_softmax"] = "full_softmax"
    num_sampled_negatives: int = 1024  # sampled_softmax: uniform negatives per batch.

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"Unknown architecture {self.architecture!r}; expected one of "
                f"{', '.join(ARCHITECTURES)}."
            )
        if self.loss not in ("full_softmax", "sampled_softmax"):
            raise ValueError(
                f"loss must be 'full_softmax' or 'sampled_softmax', not {self.loss!r}."
            )


@dataclasses.dataclass(frozen=True, eq=False)
class ItemTokens:
    """A fixed [num_items, t] table of side-feature token ids (0 = padding), compiled into
    the model as a constant. Hashed by identity, so a model holding one stays a valid
    static argument of `jax.jit`."""

    tokens: np.ndarray
    num_buckets: int  # Rows of the token embedding table (token ids are below this).


class SequenceEncoder(nn.Module):
    """Item ids (+ optional event types, time gaps, item tokens) → hidden state per position."""

    config: SequenceEncoderConfig
    num_items: int
    max_length: int  # Longest sequence; positions 0..max_length-1 are learned.
    first_item: int = 1  # First real item row (earlier rows: padding, OOV buckets).
    end_item: int | None = None  # One past the last real item row (later: table padding).
    item_tokens: ItemTokens | None = None  # Required by `item_features`; num_items rows.

    def setup(self) -> None:
        config = self.config
        dim = config.embedding_dim
        # Small initial rows (as in BERT/RecBole): Adam's fixed-size steps then move them
        # far relative to their scale from the first epoch on.
        embed = functools.partial(nn.Embed, features=dim, embedding_init=EMBEDDING_INIT)
        self.item_embedding = embed(self.num_items, name="item_embedding")
        if config.item_features:
            if self.item_tokens is None or len(self.item_tokens.tokens) != self.num_items:
                raise ValueError(
                    f"item_features needs item_tokens with {self.num_items} rows (one per "
                    "item-table row)."
                )
            self.token_embedding = embed(self.item_tokens.num_buckets, name="token_embedding")
        self.position_embedding = embed(self.max_length, name="position_embedding")
        if config.time_features:
            self.gap_embedding = embed(config.num_time_buckets, name="gap_embedding")
        if config.event_type_features:
            self.type_embedding = embed(config.num_event_types, name="type_embedding")
        self.input_norm = nn.LayerNorm()
        self.input_dropout = nn.Dropout(config.dropout)
        if config.architecture == "sasrec":
            self.blocks = [
                SASRecBlock(config.num_heads, config.dropout, config.attention_dropout)
                for _ in range(config.num_layers)
            ]
        elif config.architecture == "hstu":
            self.blocks = [
                HSTUBlock(
                    config.num_heads, config.dropout, self.max_length, config.num_time_buckets
                )
                for _ in range(config.num_layers)
            ]
        else:
            self.pooled_mlp = nn.Dense(dim)
        self.output_norm = nn.LayerNorm()

    def encode(
        self,
        items_bl: jax.Array,
        segment_bl: jax.Array,
        position_bl: jax.Array,
        *,
        age_bl: jax.Array | None = None,
        event_type_bl: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        """[b, l, d] hidden state at every position, from that position and earlier ones
        of the same segment only.

        Args:
          items_bl: item indices, PAD on padding.
          segment_bl: which packed sequence each position belongs to (0 = padding).
          position_bl: each event's index in its sequence, counted from the sequence's
            first event (never from its end: that would tell a training position how many
            events follow it, which a query at serving time never knows).
          age_bl: seconds between each event and its sequence's latest event; only
            differences between ages are used (time features).
          event_type_bl: `EventType` of each event (event-type features).
        """
        config = self.config
        x_bld = self._item_vectors(items_bl)
        x_bld += self.position_embedding(jnp.clip(position_bl, 0, self.max_length - 1))
        if config.time_features:
            previous_age_bl = jnp.pad(age_bl, ((0, 0), (1, 0)))[:, :-1]
            gap_bl = jnp.where(position_bl > 0, previous_age_bl - age_bl, 0)
            gap_bl = jnp.maximum(gap_bl, 0)
            x_bld += self.gap_embedding(log_time_buckets(gap_bl, config.num_time_buckets))
        if config.event_type_features:
            x_bld += self.type_embedding(event_type_bl)
        x_bld = self.input_dropout(self.input_norm(x_bld), deterministic=not train)
        mask_blm = causal_segment_mask(segment_bl)
        if config.architecture == "bag_of_events":
            x_bld = self._causal_mean(x_bld, mask_blm)
            x_bld = x_bld + nn.gelu(self.pooled_mlp(x_bld))
        for block in getattr(self, "blocks", ()):
            if config.architecture == "hstu":
                x_bld = block(
                    x_bld, mask_blm, age_bl if config.time_features else None, train=train
                )
            else:
                x_bld = block(x_bld, mask_blm, train=train)
        return self.output_norm(x_bld) * (segment_bl != 0)[..., None]

    def _item_vectors(self, items: jax.Array) -> jax.Array:
        """[..., d] item vectors: id rows, plus pooled token rows under `item_features`."""
        vectors = self.item_embedding(items)
        if self.config.item_features:
            tokens = jnp.asarray(self.item_tokens.tokens)[items]
            vectors += combine_bag(self.token_embedding(tokens), tokens, combiner="mean")
        return vectors

    @staticmethod
    def _causal_mean(x_bld: jax.Array, mask_blm: jax.Array) -> jax.Array:
        """Order-free pooling: each position's mean over itself and its earlier events."""
        weights_blm = mask_blm.astype(x_bld.dtype)
        return (weights_blm @ x_bld) / weights_blm.sum(axis=-1, keepdims=True)

    def _to_score_space(self, vectors: jax.Array) -> jax.Array:
        """Vectors whose dot products rank items: L2-normalised under cosine scoring."""
        if self.config.temperature is None:
            return vectors
        squared_norm = jnp.sum(vectors * vectors, axis=-1, keepdims=True)
        # max() before rsqrt: a zero (padding) vector stays zero, with a zero gradient.
        return vectors * jax.lax.rsqrt(jnp.maximum(squared_norm, 1e-12))

    def encode_users(
        self,
        user_b: jax.Array,
        history_bl: jax.Array,
        context_b: jax.Array,
        *,
        history_age_bl: jax.Array | None = None,
        history_event_type_bl: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        """[b, d] query vectors: the hidden state after a left-padded history's latest event.

        `user_b` and `context_b` are accepted for the two-tower's query interface and not
        used: the sequence is the user. An empty history gives a finite (uninformed) vector.
        """
        del user_b, context_b
        segment_bl = (history_bl != PAD).astype(jnp.int32)
        position_bl = jnp.maximum(jnp.cumsum(segment_bl, axis=1) - 1, 0)
        hidden_bld = self.encode(
            history_bl,
            segment_bl,
            position_bl,
            age_bl=history_age_bl,
            event_type_bl=history_event_type_bl,
            train=train,
        )
        return self._to_score_space(hidden_bld[:, -1])

    def encode_items(
        self, item_b: jax.Array, tokens_bt: jax.Array | None = None, *, train: bool = False
    ) -> jax.Array:
        """[b, d] item vectors (`tokens_bt` is not used: the model holds its items' tokens)."""
        del tokens_bt, train
        return self._to_score_space(self._item_vectors(item_b))

    def __call__(
        self, batch: dict[str, jax.Array], *, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """(queries [b, l, d], items [n, d]) of a packed training batch (`SequenceBatches`):
        their dot products are the next-item logits at every position."""
        hidden_bld = self.encode(
            batch["items"],
            batch["segment"],
            batch["position"],
            age_bl=batch.get("age"),
            event_type_bl=batch.get("event_type"),
            train=train,
        )
        scale = 1.0 if self.config.temperature is None else 1.0 / self.config.temperature
        all_items = jnp.arange(self.num_items)
        return self._to_score_space(hidden_bld) * scale, self._to_score_space(
            self._item_vectors(all_items)
        )
