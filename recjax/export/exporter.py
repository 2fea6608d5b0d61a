"""From a trained run to a serving bundle: export the user tower, embed the catalogue, index it."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from recjax.config import to_json
from recjax.data.examples import RetrievalData
from recjax.embeddings import item_vectors
from recjax.export.bundle import (
    PLATFORMS,
    BundleContents,
    add_directory,
    flatten_params,
    write_bundle,
)
from recjax.export.ranker import RANKER_DIR, run_ranker_export
from recjax.main_job import load_config, load_data
from recjax.models.sequence import SequenceEncoder
from recjax.models.two_tower import TwoTower
from recjax.retrieval.scann_index import build_scann_index, save_scann_index
from recjax.training.trainer import TrainedModel, restore_trained


def export_user_tower(model: TwoTower | SequenceEncoder, params: Any, history_length: int) -> bytes:
    """Serialized `jax.export` of f(params, user[b], history[b, H], context[b]) -> [b, d]:
    the two-tower's user tower, or a sequence encoder's query vector (its last state)."""
    if isinstance(model, SequenceEncoder) and (
        model.config.time_features or model.config.event_type_features
    ):
        raise ValueError(
            "Bundles carry item histories only: a sequence encoder with time_features or "
            "event_type_features can't be exported yet (train one without them to serve it)."
        )

    def user_tower(params, user, history, context):
        return model.apply({"params": params}, user, history, context, method="encode_users")

    (batch,) = export.symbolic_shape("b")
    abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    exported = export.export(jax.jit(user_tower), platforms=PLATFORMS)(
        abstract_params,
        jax.ShapeDtypeStruct((batch,), jnp.int32),
        jax.ShapeDtypeStruct((batch, history_length), jnp.int32),
        jax.ShapeDtypeStruct((batch,), jnp.int32),
    )
    return bytes(exported.serialize())


def bundle_contents(
    config_json: str, name: str, data: RetrievalData, trained: TrainedModel
) -> BundleContents:
    """Everything a serving process needs from a trained two-tower run."""
    params = jax.device_get(trained.state.params)
    flat = flatten_params(params)
    digest = hashlib.sha256(b"".join(flat[key].tobytes() for key in sorted(flat))).hexdigest()
    known = slice(data.items.first_known, None)
    timelines = data.timelines
    last_position = timelines.offsets[1:] - 1
    history = np.zeros((len(data.users), data.config.history_length), dtype=np.int32)
    context = np.zeros(len(data.users), dtype=np.int32)
    # A query after all events: history ends with the user's last event.
    history[timelines.users] = timelines.history(
        timelines.offsets[1:], data.config.history_length, rows=np.arange(len(timelines.users))
    )
    context[timelines.users] = data.context[last_position]
    return BundleContents(
        model_version=f"{name}@{int(trained.state.step)}-{digest[:8]}",
        config_json=config_json,
        user_tower=export_user_tower(trained.model, params, data.config.history_length),
        user_tower_params=flat,
        catalogue_ids=data.items.ids,
        item_embeddings=item_vectors(trained.model, params, data)[known],
        vocab={
            "users": data.users.ids,
            "items": data.items.ids,
            "contexts": data.contexts.ids,
            "users_oov": np.int64(data.users.num_oov_buckets),
            "items_oov": np.int64(data.items.num_oov_buckets),
            "contexts_oov": np.int64(data.contexts.num_oov_buckets),
        },
        item_text=np.asarray(data.item_text[known], dtype=str),
        popularity=data.train_counts[known].astype(np.float32),
        user_state={"history": history, "context": context},
    )


def export_run(workdir: str | Path, out: str | Path, *, say: Callable[[str], None] = print) -> Path:
    """Exports the run in `workdir` (the checkpoint it selected) as a bundle at `out`,
    with the run's ranker (`recjax train-ranker`) as `ranker/` when it has one."""
    config = load_config(workdir)
    data = load_data(config, say=lambda _: None)
    trained = restore_trained(config, data, workdir)
    contents = bundle_contents(to_json(config), config.name, data, trained)
    index = build_scann_index(contents.item_embeddings, config.scann)
    with tempfile.TemporaryDirectory() as scann_dir:
        save_scann_index(index, scann_dir)
        bundle = write_bundle(dataclasses.replace(contents, scann_dir=Path(scann_dir)), out)
    ranker = run_ranker_export(workdir)
    if ranker is not None:
        add_directory(bundle, RANKER_DIR, ranker)
    say(
        f"exported {contents.model_version} ({len(contents.item_embeddings):,} items, "
        f"{index.describe()['algorithm']} index{', ranker' if ranker else ''}) to {bundle}"
    )
    return bundle
