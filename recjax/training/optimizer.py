"""Separate optimizers for embedding tables and dense layers, chosen by parameter path."""

from __future__ import annotations

from typing import Any

import jax
import optax

TABLE, DENSE = "table", "dense"


def param_labels(params: Any) -> Any:
    """TABLE for every `embedding` leaf (the rows of an nn.Embed), DENSE otherwise."""

    def label(path, _leaf) -> str:
        return TABLE if any(getattr(key, "key", None) == "embedding" for key in path) else DENSE

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
    *,
    learning_rate: float,
    table_learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
) -> optax.GradientTransformation:
    """AdamW for dense layers, Adam without decay for tables, both warm-up + cosine decay."""

    def schedule(peak: float) -> optax.Schedule:
        return optax.warmup_cosine_decay_schedule(
            0.0,
            peak,
            warmup_steps=min(warmup_steps, max(total_steps - 1, 0)),
            decay_steps=max(total_steps, 1),
            end_value=peak * 0.1,
        )

    return optax.multi_transform(
        {
            DENSE: optax.adamw(schedule(learning_rate), weight_decay=weight_decay),
            TABLE: optax.adam(schedule(table_learning_rate)),
        },
        param_labels,
    )
