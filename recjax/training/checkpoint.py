"""Checkpoints: the only module that imports orbax.

A checkpoint step holds three items, written together by one
`orbax.checkpoint.CheckpointManager`:

  params         the model parameters (a StandardSave pytree),
  state          {"step", "opt_state", "rng"}: the rest of the TrainState,
  data_position  the data iterator position, a small JSON dict of ints.

Params are an item of their own so that a warm start (`init_from`) reads them
and nothing else: another run's optimizer state may not even have the same
structure. The static `apply_fn`/`tx` of a TrainState are never saved; they
come from the abstract target passed to `restore`.

Saves are asynchronous: `save` returns once the arrays are copied off the
devices (so donating them to the next step is safe) and a background thread
writes them. Call `wait_until_finished()` or `close()` (or use the Checkpointer
as a context manager) before the process exits.

Resume order, in `restore_or_initialize`: this run's latest checkpoint, else
the params of `init_from` with a fresh optimizer, else a fresh init.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, Self

import jax
import orbax.checkpoint as ocp

from recjax.training.train_state import TrainState

_PARAMS = "params"
_STATE = "state"
_DATA_POSITION = "data_position"


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """When to save, how many to keep, and where to warm-start from."""

    # Save when `step % save_every_steps == 0` (or on preemption, or forced).
    save_every_steps: int = 500
    # Keep only the newest `max_to_keep` checkpoints; older ones are deleted.
    max_to_keep: int = 2
    # Checkpoint directory of another run whose latest params initialise this
    # run when it has no checkpoint of its own (optimizer state, step and data
    # position start fresh). None: no warm start.
    init_from: str | None = None


class Checkpointer:
    """Saves and restores TrainStates (plus the data position) in one directory.

    Every process of a multi-host job must make the same calls; orbax
    coordinates who writes what.
    """

    def __init__(self, directory: str | os.PathLike[str], config: CheckpointConfig) -> None:
        if config.save_every_steps < 1:
            raise ValueError(f"save_every_steps must be >= 1, got {config.save_every_steps}")
        if config.max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {config.max_to_keep}")
        self.config = config
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=ocp.checkpoint_managers.AnySavePolicy(
                [
                    ocp.checkpoint_managers.FixedIntervalPolicy(config.save_every_steps),
                    ocp.checkpoint_managers.PreemptionCheckpointingPolicy(),
                ]
            ),
            preservation_policy=ocp.checkpoint_managers.LatestN(n=config.max_to_keep),
            # A crash mid-save leaves a temporary step directory; drop it.
            cleanup_tmp_directories=True,
            enable_async_checkpointing=True,
        )
        # orbax needs absolute paths (a relative one fails later, in its async save thread).
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    @property
    def directory(self) -> str:
        return os.fspath(self._manager.directory)

    def all_steps(self) -> list[int]:
        """Steps with a checkpoint (including one still being written), ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest checkpointed step, or None when there is none."""
        return self._manager.latest_step()

    def reached_preemption(self, step: int) -> bool:
        """True when the job is being preempted (then `save` saves regardless of step)."""
        return self._manager.reached_preemption(int(step))

    def save(
        self,
        step: int,
        state: TrainState,
        data_position: dict[str, int],
        *,
        force: bool = False,
    ) -> bool:
        """Starts saving `state` and `data_position` as checkpoint `step`.

        Args:
          step: the step number naming the checkpoint (normally `state.step`).
          state: the TrainState; only its pytree fields are written.
          data_position: where the data iterator stands, e.g. {"epoch": 2,
            "batch": 130}; restored alongside the state.
          force: save even when `step` is not a multiple of `save_every_steps`
            (e.g. the final step).

        Returns:
          Whether a save was started. False when the schedule says no, or when
          `step` is already saved (a forced final save that coincides with a
          scheduled one is a no-op rather than an error).
        """
        step = int(step)
        # Most steps are not saved: ask the cheap schedule before listing saved steps.
        if not (force or self._manager.should_save(step)) or step in self._manager.all_steps():
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    _PARAMS: ocp.args.StandardSave(state.params),
                    _STATE: ocp.args.StandardSave(_non_param_leaves(state)),
                    _DATA_POSITION: ocp.args.JsonSave(
                        {str(k): int(v) for k, v in data_position.items()}
                    ),
                }
            ),
            force=force,
        )

    def restore(
        self, abstract_state: TrainState, step: int | None = None
    ) -> tuple[TrainState, dict[str, int]]:
        """Restores checkpoint `step` (default: the latest) into `abstract_state`.

        Args:
          abstract_state: the target, usually `jax.eval_shape` of the sharded
            init: a TrainState whose leaves are `jax.ShapeDtypeStruct`s. Each
            leaf's `.sharding` is where the restored array goes, whatever
            sharding it was saved with; leaves without one land on the default
            device. Its `apply_fn`/`tx` are kept as they are.
          step: the step to restore; None for the latest.

        Returns:
          The restored TrainState and data position.

        Raises:
          FileNotFoundError: there is no checkpoint (of `step`).
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"No checkpoint in {self.directory}")
        elif step not in self._manager.all_steps():
            raise FileNotFoundError(f"No checkpoint of step {step} in {self.directory}")
        abstract_state = _with_default_sharding(abstract_state)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    _PARAMS: ocp.args.StandardRestore(abstract_state.params),
                    _STATE: ocp.args.StandardRestore(_non_param_leaves(abstract_state)),
                    _DATA_POSITION: ocp.args.JsonRestore(),
                }
            ),
        )
        state = abstract_state.replace(params=restored[_PARAMS], **restored[_STATE])
        data_position = {str(k): int(v) for k, v in restored[_DATA_POSITION].items()}
        return state, data_position

    def restore_params(
        self,
        directory: str | os.PathLike[str],
        abstract_params: Any,
        step: int | None = None,
    ) -> Any:
        """Reads only the params of another run's checkpoint (for a warm start).

        Args:
          directory: the other run's checkpoint directory (the one holding
            its step subdirectories).
          abstract_params: target pytree of `jax.ShapeDtypeStruct`s, with the
            shardings the params should get; the structure and shapes must
            match the saved params.
          step: which of its steps; None for its latest.
        """
        return self._manager.restore(
            step,
            directory=os.path.abspath(directory),
            args=ocp.args.Composite(
                **{_PARAMS: ocp.args.StandardRestore(_with_default_sharding(abstract_params))}
            ),
        )[_PARAMS]

    def wait_until_finished(self) -> None:
        """Blocks until every started save is fully written (and old ones pruned)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves, then releases orbax's threads."""
        self._manager.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def restore_or_initialize(
    checkpointer: Checkpointer,
    abstract_state: TrainState,
    init_fn: Callable[[], TrainState],
    config: CheckpointConfig,
) -> tuple[TrainState, dict[str, int], str]:
    """Resumes this run, else warm-starts from `config.init_from`, else initialises.

    Args:
      checkpointer: this run's Checkpointer.
      abstract_state: `jax.eval_shape` of the (sharded) init, with shardings.
      init_fn: builds a fresh, sharded TrainState (the jitted init); called
        only when there is nothing to resume.
      config: supplies `init_from`.

    Returns:
      (state, data_position, how) where `how` is "resumed@<step>",
      "warm-start" or "fresh", for the log. A warm start keeps the fresh
      state's step, RNG and an optimizer state re-initialised for the loaded
      params; data_position is {} unless resumed.
    """
    step = checkpointer.latest_step()
    if step is not None:
        state, data_position = checkpointer.restore(abstract_state, step)
        return state, data_position, f"resumed@{step}"
    fresh = init_fn()
    if config.init_from is None:
        return fresh, {}, "fresh"
    params = checkpointer.restore_params(config.init_from, abstract_state.params)
    # Re-init the optimizer for the loaded params (some optimizers keep a copy
    # of them), placed exactly like the fresh one.
    opt_shardings = jax.tree.map(lambda x: x.sharding, fresh.opt_state)
    opt_state = jax.jit(fresh.tx.init, out_shardings=opt_shardings)(params)
    return fresh.replace(params=params, opt_state=opt_state), {}, "warm-start"


def _non_param_leaves(state: TrainState) -> dict[str, Any]:
    return {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}


def _with_default_sharding(tree: Any) -> Any:
    """Gives shardless ShapeDtypeStructs the default device, so every version of
    orbax restores them as jax Arrays there (not as numpy arrays, or wherever
    they were saved)."""
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def fill(leaf: Any) -> Any:
        if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=default)
        return leaf

    return jax.tree.map(fill, tree)
