"""The bundle format: files, a manifest of their sha256, and strict loading.

Layout of a bundle directory (all arrays are `.npy`/`.npz` read with allow_pickle=False):

    manifest.json            format, model version, library versions, sha256 of every file
    config.json              the experiment config that trained the model
    user_tower.jaxexport     `jax.export` (StableHLO) of f(params, user, history, context)
                             with a symbolic batch dimension
    user_tower_params.npz    its parameters, keys are '/'-joined pytree paths
    catalogue.npz            the N servable items: ids, text, popularity (cold start)
    item_embeddings.npy      [N, d] float32 vectors of the catalogue items, same order
    vocab.npz                users / items / contexts raw ids (sorted) and OOV bucket counts:
                             how the user tower indexes ids (the catalogue may differ)
    user_state.npz           per known user: last `history` items and last context index
    scann/                   ScaNN's own serialization (`recjax.retrieval.scann_index`)
    ranker/                  optional: the multi-task ranker (`recjax.export.ranker`)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT = "recjax-bundle/1"
PLATFORMS = ("cpu", "cuda")  # Exports are lowered for both: a bundle serves on CPU or GPU hosts.
MANIFEST = "manifest.json"
_LIBRARIES = ("recjax", "jax", "jaxlib", "numpy", "scann")


class BundleError(ValueError):
    """A bundle that is missing, tampered with, truncated or of an unknown format."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BundleContents:
    """The in-memory form of a bundle (what `write_bundle` writes and `read_bundle` reads)."""

    model_version: str  # e.g. "online_retail@1476-3f2a9c1d": run name, step, params hash.
    config_json: str  # The experiment config, as JSON text.
    user_tower: bytes  # Serialized jax.export of f(params, user, history, context).
    user_tower_params: dict[str, np.ndarray]  # Flat '/'-joined parameter paths → arrays.
    catalogue_ids: np.ndarray  # [N] raw ids of the servable items.
    item_text: np.ndarray  # [N] unicode display text.
    popularity: np.ndarray  # [N] float32 popularity (cold start).
    item_embeddings: np.ndarray  # [N, d] float32, rows aligned with catalogue_ids.
    vocab: dict[str, np.ndarray]  # users, items, contexts id arrays + *_oov bucket counts.
    user_state: dict[str, np.ndarray]  # history [U, H] int32, context [U] int32.
    scann_dir: Path | None = None  # A directory written by `save_scann_index`.


def flatten_params(params: Any) -> dict[str, np.ndarray]:
    """{'user_tower/Dense_0/kernel': array, ...}: '/'-joined dict paths → host arrays."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return {"/".join(key.key for key in path): np.asarray(leaf) for path, leaf in leaves}


def unflatten_params(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of `flatten_params`."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def write_bundle(contents: BundleContents, out: str | Path) -> Path:
    """Writes `contents` into the new directory `out` and seals it with a manifest."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty: choose a new --out directory.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(contents.config_json)
    (out / "user_tower.jaxexport").write_bytes(contents.user_tower)
    np.savez(out / "user_tower_params.npz", **contents.user_tower_params)
    np.save(out / "item_embeddings.npy", contents.item_embeddings.astype(np.float32))
    np.savez(out / "vocab.npz", **contents.vocab)
    np.savez(
        out / "catalogue.npz",
        ids=contents.catalogue_ids,
        text=contents.item_text.astype(str),
        popularity=contents.popularity.astype(np.float32),
    )
    np.savez(out / "user_state.npz", **contents.user_state)
    if contents.scann_dir is not None:
        shutil.copytree(contents.scann_dir, out / "scann")
    files = {
        path.relative_to(out).as_posix(): _sha256(path)
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }
    manifest = {
        "format": FORMAT,
        "model_version": contents.model_version,
        "versions": {name: _version(name) for name in _LIBRARIES},
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out


def add_directory(bundle: str | Path, name: str, source: str | Path) -> None:
    """Copies the directory `source` into the (verified) bundle as `name/` and re-seals the
    manifest with the sha256 of its files."""
    bundle = Path(bundle)
    manifest = verify_bundle(bundle)
    if (bundle / name).exists():
        raise BundleError(f"{bundle / name} exists already")
    shutil.copytree(source, bundle / name)
    manifest["files"] |= {
        path.relative_to(bundle).as_posix(): _sha256(path)
        for path in sorted((bundle / name).rglob("*"))
        if path.is_file()
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2))


def read_bundle(path: str | Path) -> BundleContents:
    """Verifies every checksum, then loads the bundle; BundleError says what is wrong."""
    path = Path(path)
    manifest = verify_bundle(path)
    load = lambda name: np.load(path / name, allow_pickle=False)  # noqa: E731
    with (
        load("user_tower_params.npz") as params,
        load("vocab.npz") as vocab,
        load("user_state.npz") as user_state,
        load("catalogue.npz") as catalogue,
    ):
        return BundleContents(
            model_version=manifest["model_version"],
            config_json=(path / "config.json").read_text(),
            user_tower=(path / "user_tower.jaxexport").read_bytes(),
            user_tower_params=dict(params),
            catalogue_ids=catalogue["ids"],
            item_text=catalogue["text"],
            popularity=catalogue["popularity"],
            item_embeddings=load("item_embeddings.npy"),
            vocab=dict(vocab),
            user_state=dict(user_state),
            scann_dir=path / "scann" if (path / "scann").is_dir() else None,
        )


def verify_bundle(path: Path) -> dict[str, Any]:
    """The manifest, after checking format, file list and every sha256."""
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: no {MANIFEST} (not a recjax bundle?)") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"{path / MANIFEST}: corrupt ({error})") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    present.discard(MANIFEST)
    listed = set(manifest["files"])
    if missing := sorted(listed - present):
        raise BundleError(f"{path}: file {missing[0]} is missing (truncated bundle?)")
    if extra := sorted(present - listed):
        raise BundleError(f"{path}: file {extra[0]} is not in the manifest (tampered bundle?)")
    for name, digest in manifest["files"].items():
        if _sha256(path / name) != digest:
            raise BundleError(f"{path / name}: sha256 mismatch (tampered or truncated)")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
