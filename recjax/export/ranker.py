"""The ranker's serving files: a `jax.export`ed multi-task model and what encodes requests.

A ranker directory (added to a bundle as `ranker/`, so the bundle's manifest covers it;
`recjax.serving.ranker.ServedRanker` loads it):

    ranker.json             model version, tasks (name, kind), input field order and sizes
    ranker.jaxexport        `jax.export` (StableHLO) of f(params, inputs) -> task -> [b]
                            probabilities (binary heads) or values (regression heads), all
                            tasks in one forward pass, symbolic batch b, for CPU and CUDA
    ranker_params.npz       its parameters ('/'-joined pytree paths)
    ranker_encoder.npz      vocabularies and numeric standardisation (`RankingEncoder`)
    ranker_features.npz     per-user / per-item history and side fields (`ServingFeatures`)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from recjax.data.ranking_examples import RankingEncoder
from recjax.data.ranking_serving import ServingFeatures
from recjax.export.bundle import PLATFORMS, flatten_params
from recjax.models.ranking import RankingModel, scores

RANKER_DIR = "ranker"  # In a run's workdir (checkpoints, results) and in a bundle.
EXPORT_DIR = "export"  # Under a run's RANKER_DIR: the serving files listed above.


def run_ranker_export(workdir: str | Path) -> Path | None:
    """The exported ranker directory of the run in `workdir`, None if it has none."""
    directory = Path(workdir) / RANKER_DIR / EXPORT_DIR
    return directory if (directory / "ranker.json").is_file() else None


def export_ranker(
    model: RankingModel,
    params: Any,
    encoder: RankingEncoder,
    features: ServingFeatures,
    out: str | Path,
    *,
    model_version: str,
) -> Path:
    """Writes the ranker directory `out` (see the module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = jax.device_get(params)
    sizes = model.features

    def ranker(params, inputs):
        return scores(model.apply({"params": params}, inputs), model.tasks)

    (batch,) = export.symbolic_shape("b")
    abstract_inputs = {
        "user": jax.ShapeDtypeStruct((batch,), jnp.int32),
        "item": jax.ShapeDtypeStruct((batch,), jnp.int32),
        "categorical": jax.ShapeDtypeStruct((batch, sizes.num_categorical), jnp.int32),
        "numeric": jax.ShapeDtypeStruct((batch, sizes.num_numeric), jnp.float32),
        "session": jax.ShapeDtypeStruct((batch, sizes.session_length), jnp.int32),
        "position": jax.ShapeDtypeStruct((batch,), jnp.int32),
    }
    abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    exported = export.export(jax.jit(ranker), platforms=PLATFORMS)(abstract_params, abstract_inputs)
    (out / "ranker.jaxexport").write_bytes(bytes(exported.serialize()))
    np.savez(out / "ranker_params.npz", **flatten_params(params))
    np.savez(
        out / "ranker_encoder.npz",
        users=encoder.users.ids,
        items=encoder.items.ids,
        numeric_mean=encoder.numeric_mean,
        numeric_std=encoder.numeric_std,
        **{f"categorical/{name}": vocab.ids for name, vocab in encoder.categorical.items()},
    )
    np.savez(
        out / "ranker_features.npz",
        session=features.session,
        user_count=features.user_count,
        item_count=features.item_count,
        **{f"user_field/{name}": v for name, v in features.user_fields.items()},
        **{f"item_field/{name}": v for name, v in features.item_fields.items()},
    )
    description = {
        "model_version": model_version,
        "tasks": [{"name": task.name, "kind": task.kind} for task in model.tasks],
        "categorical": list(encoder.categorical),
        "numeric_names": list(encoder.numeric_names),
        "session_length": encoder.session_length,
        "num_positions": encoder.num_positions,
        "num_oov_buckets": {
            "users": encoder.users.num_oov_buckets,
            "items": encoder.items.num_oov_buckets,
            **{name: vocab.num_oov_buckets for name, vocab in encoder.categorical.items()},
        },
    }
    (out / "ranker.json").write_text(json.dumps(description, indent=2))
    return out
