"""Train / validation / test assignment of every timeline position."""

from __future__ import annotations

import enum

import numpy as np

from recjax.data.timelines import UserTimelines


class Role(enum.IntEnum):
    TRAIN = 0
    VALID = 1
    TEST = 2


def leave_last_out(timelines: UserTimelines) -> np.ndarray:
    """[n] `Role` per position: each user's last event is test, the one before validation.

    Users with two events give one to test; users with one event keep it for training
    (nothing to hold out without leaving them with no history). Ties in time were
    broken by source row when the timelines were built, so the split is deterministic.
    """
    roles = np.full(timelines.num_events, Role.TRAIN, dtype=np.int8)
    lengths = timelines.lengths
    ends = timelines.offsets[1:]
    roles[ends[lengths >= 2] - 1] = Role.TEST
    roles[ends[lengths >= 3] - 2] = Role.VALID
    return roles


def temporal_cut(timelines: UserTimelines, *, valid_start: int, test_start: int) -> np.ndarray:
    """[n] `Role` per position by global time cuts.

    train < valid_start <= valid < test_start <= test.
    """
    if valid_start > test_start:
        raise ValueError(
            f"valid_start ({valid_start}) must not be after test_start ({test_start})."
        )
    roles = np.full(timelines.num_events, Role.TRAIN, dtype=np.int8)
    roles[timelines.timestamps >= valid_start] = Role.VALID
    roles[timelines.timestamps >= test_start] = Role.TEST
    return roles
