"""A loaded ranker directory (`recjax.export.ranker`): encodes a request's (user,
candidate items) from precomputed features and scores every task in one forward pass.
Runs no training code and reads no pickle."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from recjax.data.ranking_examples import RankingEncoder
from recjax.data.ranking_serving import ServingFeatures
from recjax.data.vocab import Vocabulary
from recjax.export.bundle import unflatten_params
from recjax.losses.multitask import TaskSpec

_MIN_BATCH = 64  # Requests are padded to a power of two at least this: few compilations.


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServedRanker:
    """A loaded ranker directory: encodes (user, candidate items) and scores every task."""

    model_version: str
    tasks: tuple[TaskSpec, ...]
    encoder: RankingEncoder
    features: ServingFeatures
    call: Any  # jitted f(params, inputs) -> task -> [b] scores.
    params: Any

    @classmethod
    def load(cls, directory: str | Path) -> ServedRanker:
        directory = Path(directory)
        about = json.loads((directory / "ranker.json").read_text())
        oov = about["num_oov_buckets"]
        load = lambda name: np.load(directory / name, allow_pickle=False)  # noqa: E731
        with load("ranker_encoder.npz") as vocab, load("ranker_features.npz") as features:
            encoder = RankingEncoder(
                users=Vocabulary(ids=vocab["users"], num_oov_buckets=oov["users"]),
                items=Vocabulary(ids=vocab["items"], num_oov_buckets=oov["items"]),
                categorical={
                    name: Vocabulary(ids=vocab[f"categorical/{name}"], num_oov_buckets=oov[name])
                    for name in about["categorical"]
                },
                numeric_names=tuple(about["numeric_names"]),
                numeric_mean=vocab["numeric_mean"],
                numeric_std=vocab["numeric_std"],
                session_length=about["session_length"],
                num_positions=about["num_positions"],
            )
            serving = ServingFeatures(
                session=features["session"],
                user_count=features["user_count"],
                item_count=features["item_count"],
                user_fields=_prefixed(features, "user_field/"),
                item_fields=_prefixed(features, "item_field/"),
            )
        with load("ranker_params.npz") as params:
            params = jax.device_put(unflatten_params(dict(params)))
        exported = export.deserialize(bytearray((directory / "ranker.jaxexport").read_bytes()))
        return cls(
            model_version=about["model_version"],
            tasks=tuple(TaskSpec(name=t["name"], kind=t["kind"]) for t in about["tasks"]),
            encoder=encoder,
            features=serving,
            call=jax.jit(exported.call),
            params=params,
        )

    def score(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """task -> [n] probability or value for encoded `inputs`, in one forward pass
        (padded to a power of two, so a handful of batch sizes are ever compiled)."""
        n = len(inputs["item"])
        padded = max(_MIN_BATCH, 1 << max(n - 1, 0).bit_length())
        rows = np.minimum(np.arange(padded), max(n - 1, 0))
        outputs = self.call(self.params, {name: x[rows] for name, x in inputs.items()})
        return {name: np.asarray(x)[:n] for name, x in outputs.items()}

    def score_items(
        self,
        user: Any,
        items: np.ndarray,
        timestamp: int,
        request_numeric: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every task's score of raw `items` [m] for raw `user`, shown at `timestamp`;
        `request_numeric`: features only the request knows (`ServingFeatures.encode`)."""
        inputs = self.features.encode(
            self.encoder, np.asarray(user), items, timestamp, request_numeric
        )
        return self.score(inputs)


def _prefixed(arrays: Any, prefix: str) -> dict[str, np.ndarray]:
    return {key[len(prefix) :]: arrays[key] for key in arrays.files if key.startswith(prefix)}
