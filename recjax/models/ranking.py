"""Multi-task rankers: MMoE, a shared-bottom baseline and one model per task.

All three read the same features (`RankingFeatures`) and return, in one forward
pass, a dict task -> [b] output: a logit for binary heads, a value for regression
heads. `scores` turns logits into probabilities for serving.

Inputs of a batch (dict of arrays; b = batch, c = categorical fields, f = numeric
features, n = session length, e = experts, d = width):
  user [b], item [b]   int32 vocabulary indices (0 = PAD, then OOV buckets, then ids)
  categorical [b, c]   int32 rows of one shared side-feature table (0 = missing)
  numeric [b, f]       float32, standardised
  session [b, n]       int32 item indices of the user's last n actions, PAD padded
  position [b]         int32 display slot, 1-based; 0 = unknown (scoring, or no data)

Position is handled by a position-bias shallow tower: a learned logit per slot is added
to every binary head in training, and it is exactly zero for position 0, so scoring
with position 0 gives the position-free relevance.

References: Ma et al., "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts" (KDD 2018); Caruana, "Multitask Learning" (1997);
Zhao et al., "Recommending What Video to Watch Next: A Multitask Ranking System"
(RecSys 2019; MMoE for ranking, the shallow position tower).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.data.vocab import PAD
from recjax.layers.embedding import EmbeddingTable, combine_bag
from recjax.losses.multitask import TaskSpec

Architecture = Literal["mmoe", "shared_bottom", "single_task"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingFeatures:
    """Sizes of the model inputs, fixed by the data (see `recjax.data.ranking_examples`)."""

    num_users: int  # Rows of the user table (PAD and OOV buckets included).
    num_items: int  # Rows of the item table (PAD and OOV buckets included).
    num_categorical_rows: int  # Rows of the shared side-feature table (0 = missing).
    num_categorical: int  # Categorical fields c per example.
    num_numeric: int  # Numeric features f per example.
    session_length: int  # Last actions n per example.
    num_positions: int  # Display slots 1..num_positions; 0 = no position data.


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingModelConfig:
    """Architecture and sizes of a multi-task ranker."""

    architecture: Architecture = "mmoe"  # mmoe, shared_bottom or single_task.
    embedding_dim: int = 16  # Width of every embedding table.
    session_pooling: Literal["mean", "attention"] = "mean"  # How the last actions pool.
    num_experts: int = 4  # MMoE: experts shared by all tasks.
    expert_dims: tuple[int, ...] = (64,)  # MMoE: hidden layers of each expert.
    bottom_dims: tuple[int, ...] = (128,)  # Shared-bottom and single-task: the bottom MLP.
    tower_dims: tuple[int, ...] = (32,)  # Hidden layers of each task's tower.


class MLP(nn.Module):
    """Dense + ReLU layers."""

    dims: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.dims:
            x = nn.relu(nn.Dense(width)(x))
        return x


class FeatureEncoder(nn.Module):
    """Every input feature as one vector [b, d_in]: id and side-feature embeddings,
    numeric features, and the pooled session."""

    features: RankingFeatures
    embedding_dim: int
    session_pooling: Literal["mean", "attention"]

    @nn.compact
    def __call__(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        dim, sizes = self.embedding_dim, self.features
        items = EmbeddingTable(sizes.num_items, dim, name="item")
        item_bd = items(batch["item"])
        parts = [EmbeddingTable(sizes.num_users, dim, name="user")(batch["user"]), item_bd]
        if sizes.num_categorical:
            table = EmbeddingTable(max(sizes.num_categorical_rows, 1), dim, name="categorical")
            rows_bcd = table(batch["categorical"])
            mask_bc1 = (batch["categorical"] != PAD)[..., None]
            parts.append(jnp.where(mask_bc1, rows_bcd, 0).reshape(item_bd.shape[0], -1))
        if sizes.num_numeric:
            parts.append(batch["numeric"].astype(item_bd.dtype))
        if sizes.session_length:
            parts.append(self._session(items, batch["session"], item_bd))
        return jnp.concatenate(parts, axis=-1)

    def _session(self, items: EmbeddingTable, session_bn: jax.Array, item_bd: jax.Array):
        """The last actions pooled: their mean, or attention with the candidate as query
        (DIN-style: actions like the candidate weigh more). Shares the item table."""
        if self.session_pooling == "mean":
            return items.bag(session_bn, combiner="mean")
        rows_bnd = items(session_bn)
        logits_bn = jnp.einsum("bd,bnd->bn", item_bd, rows_bnd) / jnp.sqrt(item_bd.shape[-1])
        present_bn = session_bn != PAD
        weights_bn = jax.nn.softmax(jnp.where(present_bn, logits_bn, -1e9), axis=-1)
        return combine_bag(rows_bnd, session_bn, weights_bn * present_bn, "sum")


class TaskHeads(nn.Module):
    """One tower per task, each ending in a single output unit: inputs [t][b, d] -> [b]."""

    tasks: tuple[TaskSpec, ...]
    tower_dims: tuple[int, ...]

    @nn.compact
    def __call__(self, inputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return {
            task.name: nn.Dense(1, name=f"{task.name}_out")(
                MLP(self.tower_dims, name=f"{task.name}_tower")(inputs[task.name])
            )[:, 0]
            for task in self.tasks
        }


class SharedBottom(nn.Module):
    """Encoder and bottom MLP shared by all tasks, then a tower per task (hard sharing)."""

    features: RankingFeatures
    config: RankingModelConfig
    tasks: tuple[TaskSpec, ...]

    @nn.compact
    def __call__(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        config = self.config
        x = FeatureEncoder(self.features, config.embedding_dim, config.session_pooling)(batch)
        shared = MLP(config.bottom_dims, name="bottom")(x)
        return TaskHeads(self.tasks, config.tower_dims)({t.name: shared for t in self.tasks})


class MMoE(nn.Module):
    """Shared experts; each task mixes them with its own softmax gate over the inputs.

    The gates are sown as `intermediates/gates`: task -> [b, e], rows summing to 1.
    """

    features: RankingFeatures
    config: RankingModelConfig
    tasks: tuple[TaskSpec, ...]

    @nn.compact
    def __call__(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        config = self.config
        x_bd = FeatureEncoder(self.features, config.embedding_dim, config.session_pooling)(batch)
        # num_experts MLPs with separate parameters, run as one batched computation.
        experts = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=1,
            axis_size=config.num_experts,
        )(config.expert_dims, name="experts")
        experts_bed = experts(x_bd)
        gates = {
            task.name: jax.nn.softmax(nn.Dense(config.num_experts, name=f"{task.name}_gate")(x_bd))
            for task in self.tasks
        }
        self.sow("intermediates", "gates", gates)
        mixed = {
            name: jnp.einsum("be,bed->bd", gate_be, experts_bed) for name, gate_be in gates.items()
        }
        return TaskHeads(self.tasks, config.tower_dims)(mixed)


class SingleTask(nn.Module):
    """One independent model per task (its own tables, bottom and tower): the baseline
    that shares nothing. Trained together only for convenience; no parameter is shared,
    so each task's gradient touches only its own model."""

    features: RankingFeatures
    config: RankingModelConfig
    tasks: tuple[TaskSpec, ...]

    @nn.compact
    def __call__(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        outputs = {}
        for task in self.tasks:
            model = SharedBottom(self.features, self.config, (task,), name=f"{task.name}_model")
            outputs |= model(batch)
        return outputs


_ARCHITECTURES = {"mmoe": MMoE, "shared_bottom": SharedBottom, "single_task": SingleTask}


class RankingModel(nn.Module):
    """A multi-task ranker (`config.architecture`) plus the position-bias tower."""

    features: RankingFeatures
    config: RankingModelConfig
    tasks: tuple[TaskSpec, ...]

    @nn.compact
    def __call__(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """task -> [b] logit (binary) or value (regression), position bias included."""
        if self.config.architecture not in _ARCHITECTURES:
            raise ValueError(
                f"Unknown architecture {self.config.architecture!r}; "
                f"expected one of {', '.join(_ARCHITECTURES)}."
            )
        network = _ARCHITECTURES[self.config.architecture]
        outputs = network(self.features, self.config, self.tasks, name="network")(batch)
        binary = [task.name for task in self.tasks if task.kind == "binary"]
        if self.features.num_positions and binary:
            position_b = batch["position"]
            bias_bt = nn.Embed(self.features.num_positions + 1, len(binary), name="position_bias")(
                position_b
            )
            bias_bt = jnp.where((position_b > 0)[:, None], bias_bt, 0.0)
            for t, name in enumerate(binary):
                outputs[name] = outputs[name] + bias_bt[:, t]
        return outputs


def scores(outputs: Mapping[str, jax.Array], tasks: tuple[TaskSpec, ...]) -> dict[str, jax.Array]:
    """Probabilities for binary heads (sigmoid of the logit), values for regression heads."""
    return {
        task.name: jax.nn.sigmoid(outputs[task.name])
        if task.kind == "binary"
        else outputs[task.name]
        for task in tasks
    }


def parameter_count(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))
