"""One device mesh with named axes: `data` splits the batch, `model` splits table rows."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
MODEL_AXIS = "model"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
    """Mesh shape; -1 on one axis means "all the remaining devices"."""

    data: int = -1  # Devices along the batch axis.
    model: int = 1  # Devices along the embedding-table row axis.


def parse_mesh(text: str) -> MeshConfig:
    """A MeshConfig from `data=2,model=4` (the `--mesh` flag); an omitted axis keeps its
    default, and -1 means "all the remaining devices"."""
    sizes = dataclasses.asdict(MeshConfig())  # Field names are the axis names.
    given = set()
    for part in text.split(","):
        axis, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not axis:
            raise ValueError(f"Mesh {text!r}: expected AXIS=SIZE items like data=2,model=4.")
        if axis not in sizes:
            raise ValueError(f"Mesh {text!r}: unknown axis {axis!r} (axes: {', '.join(sizes)}).")
        if axis in given:
            raise ValueError(f"Mesh {text!r}: axis {axis!r} given twice.")
        try:
            size = int(value)
        except ValueError:
            raise ValueError(f"Mesh {text!r}: size of {axis!r} must be an integer.") from None
        if size < 1 and size != -1:
            raise ValueError(f"Mesh {text!r}: size of {axis!r} must be positive or -1.")
        sizes[axis] = size
        given.add(axis)
    if list(sizes.values()).count(-1) > 1:
        raise ValueError(f"Mesh {text!r}: at most one axis may be -1 (an omitted data axis is -1).")
    return MeshConfig(**sizes)


def make_mesh(config: MeshConfig, devices: list[jax.Device] | None = None) -> Mesh:
    """A (data, model) mesh over `devices` (default: all devices of this process group).

    With no -1 axis, a mesh smaller than the device list takes its first devices (one
    device for debugging, say); a larger one is an error.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = [config.data, config.model]
    if sizes.count(-1) > 1:
        raise ValueError(f"At most one mesh axis may be -1, got {config}.")
    known = math.prod(size for size in sizes if size != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into a {config} mesh.")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) > len(devices):
        raise ValueError(f"Mesh {sizes} needs {math.prod(sizes)} devices, {len(devices)} present.")
    used = devices[: math.prod(sizes)]
    return Mesh(np.asarray(used).reshape(sizes), (DATA_AXIS, MODEL_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over `data`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def param_shardings(mesh: Mesh, abstract_params):
    """Embedding tables split by rows over `model` (when the rows divide); the rest replicated."""
    model_size = mesh.shape[MODEL_AXIS]

    def sharding_for(path, leaf) -> NamedSharding:
        is_table = any(getattr(key, "key", None) == "embedding" for key in path)
        if is_table and leaf.ndim == 2 and leaf.shape[0] % model_size == 0:
            return NamedSharding(mesh, PartitionSpec(MODEL_AXIS, None))
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(sharding_for, abstract_params)
