"""Multi-task ranking losses: one masked loss per task head, and their weighted sum.

A task's label may be missing for an example (dwell is only defined after a click, a
rating only for rated items, ...). Missing labels carry mask 0: they are left out of
that task's mean, never treated as negatives, and their label value is ignored.

Letters in array names: b = batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import optax

TaskKind = Literal["binary", "regression"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One prediction head: its name, kind, loss and weight in the total."""

    name: str  # Key of the head's output, label and mask.
    kind: TaskKind  # "binary": the head emits a logit; "regression": a real value.
    weight: float = 1.0  # Weight of this task's mean loss in the total.
    # Regression loss: "mse", or "huber" (squared near 0, linear beyond `huber_delta`).
    regression_loss: Literal["mse", "huber"] = "mse"
    huber_delta: float = 1.0  # Where the Huber loss turns from squared to linear.

    def __post_init__(self) -> None:
        if self.kind not in ("binary", "regression"):
            raise ValueError(f"Task {self.name!r}: kind must be binary or regression.")
        if self.regression_loss not in ("mse", "huber"):
            raise ValueError(f"Task {self.name!r}: regression_loss must be mse or huber.")
        if self.weight < 0:
            raise ValueError(f"Task {self.name!r}: weight must be >= 0, got {self.weight}.")


def masked_mean(values_b: jax.Array, mask_b: jax.Array) -> jax.Array:
    """Mean of `values_b` where `mask_b`; 0 when nothing is unmasked (with zero gradient)."""
    mask_b = mask_b.astype(values_b.dtype)
    # `where` rather than a product: a NaN at a masked example must not leak through.
    total = jnp.where(mask_b > 0, values_b, 0.0).sum()
    return total / jnp.maximum(mask_b.sum(), 1.0)


def task_loss(
    task: TaskSpec, output_b: jax.Array, label_b: jax.Array, mask_b: jax.Array
) -> jax.Array:
    """Masked mean loss of one head: BCE on logits, or MSE/Huber on predictions."""
    # Masked labels may hold anything (NaN too): replace them before they reach a loss.
    label_b = jnp.where(mask_b, label_b, 0.0).astype(output_b.dtype)
    if task.kind == "binary":
        per_example = optax.sigmoid_binary_cross_entropy(output_b, label_b)
    elif task.regression_loss == "huber":
        per_example = optax.huber_loss(output_b, label_b, delta=task.huber_delta)
    else:
        per_example = jnp.square(output_b - label_b)
    return masked_mean(per_example, mask_b)


def multitask_loss(
    tasks: Sequence[TaskSpec],
    outputs: Mapping[str, jax.Array],
    labels: Mapping[str, jax.Array],
    masks: Mapping[str, jax.Array],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Σ_t w_t · (masked mean loss of task t).

    Args:
      tasks: the heads and their weights.
      outputs: task -> [b] logits (binary) or predictions (regression).
      labels: task -> [b] labels: 0/1 for binary tasks, real values for regression.
      masks: task -> [b] bool, False where the task's label is missing.

    Returns:
      (total, per-task mean losses before weighting).
    """
    per_task = {
        task.name: task_loss(task, outputs[task.name], labels[task.name], masks[task.name])
        for task in tasks
    }
    total = sum((task.weight * per_task[task.name] for task in tasks), jnp.zeros(()))
    return total, per_task
