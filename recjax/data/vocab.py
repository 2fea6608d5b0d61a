"""Raw ids ↔ contiguous indices, with a reserved padding index and hashed OOV buckets."""

from __future__ import annotations

import dataclasses

import numpy as np

from recjax.data.hashing import hash_to_buckets

PAD = 0  # Index 0 is padding in every vocabulary: embeddings of it are masked out.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Vocabulary:
    """Layout: [PAD, OOV bucket 0..num_oov_buckets-1, known id 0..len(ids)-1].

    Known ids are kept sorted so lookup is a vectorised binary search. Unseen ids
    hash into the OOV buckets (cold start) instead of failing.
    """

    ids: np.ndarray  # [V] sorted unique raw ids (int64 or unicode).
    num_oov_buckets: int = 1  # Hash buckets for unseen ids (0 = unseen ids are an error).

    @classmethod
    def build(cls, raw_ids: np.ndarray, *, num_oov_buckets: int = 1) -> Vocabulary:
        return cls(ids=np.unique(raw_ids), num_oov_buckets=num_oov_buckets)

    @property
    def first_known(self) -> int:
        return 1 + self.num_oov_buckets

    def __len__(self) -> int:
        return self.first_known + len(self.ids)

    def lookup(self, raw_ids: np.ndarray) -> np.ndarray:
        """Indices of `raw_ids` (int32); unseen ids go to their hashed OOV bucket."""
        raw_ids = np.asarray(raw_ids)
        position, known = self._locate(raw_ids)
        if not known.all() and self.num_oov_buckets == 0:
            raise KeyError(f"Unknown id {raw_ids[~known][0].item()!r} and no OOV buckets.")
        indices = np.empty(raw_ids.shape, dtype=np.int32)
        indices[known] = self.first_known + position[known]
        if not known.all():
            indices[~known] = 1 + hash_to_buckets(raw_ids[~known], self.num_oov_buckets)
        return indices

    def contains(self, raw_ids: np.ndarray) -> np.ndarray:
        """True where a raw id is known (not an OOV bucket)."""
        return self._locate(np.asarray(raw_ids))[1]

    def _locate(self, raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self.ids) and raw_ids.dtype.kind != self.ids.dtype.kind:
            raise TypeError(f"Vocabulary holds {self.ids.dtype} ids, looked up {raw_ids.dtype}.")
        position = np.searchsorted(self.ids, raw_ids)
        known = position < len(self.ids)
        known[known] = self.ids[position[known]] == raw_ids[known]
        return position, known

    def raw(self, indices: np.ndarray) -> np.ndarray:
        """Raw ids of known indices; raises for padding/OOV indices."""
        indices = np.asarray(indices)
        if (indices < self.first_known).any():
            raise KeyError("Padding and OOV indices have no raw id.")
        return self.ids[indices - self.first_known]
