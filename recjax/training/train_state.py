"""The TrainState pytree: everything a training step reads and writes.

Step, params, optimizer state and the RNG key are pytree leaves (they are
jitted, sharded and checkpointed); the model's `apply_fn` and the optax
transform are static fields, rebuilt from code and config, never saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Step, params, optimizer state and RNG of one training run.

    Attributes:
      step: int32 scalar, the number of applied updates.
      params: the model parameters (any pytree of arrays).
      opt_state: the optax state for `params`.
      rng: a raw uint32 PRNG key (`jax.random.PRNGKey(seed)`); per-step keys
        are `jax.random.fold_in(rng, step)`, so it never needs to change.
      apply_fn: the model's apply function (static).
      tx: the optax transformation (static).
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    rng: jax.Array
    apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(
        cls,
        *,
        apply_fn: Callable[..., Any],
        params: Any,
        tx: optax.GradientTransformation,
        rng: jax.Array,
    ) -> TrainState:
        """Returns the state at step 0 with a freshly initialised optimizer."""
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=rng,
            apply_fn=apply_fn,
            tx=tx,
        )

    def apply_gradients(self, grads: Any) -> TrainState:
        """Returns the state after one optimizer update with `grads`."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state)
