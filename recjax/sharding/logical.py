"""Logical axis names for array dimensions, and the rule tables that map them onto the mesh.

Layers name their parameter dimensions with the logical names below
(`nn.with_logical_partitioning`); an experiment picks a rule table; `logical_shardings`
turns the two into the `NamedSharding`s that a jitted init uses as out shardings, so
parameters are created already laid out on the mesh.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from recjax.sharding.mesh import DATA_AXIS, MODEL_AXIS

BATCH = "batch"  # Examples in a batch.
VOCAB = "vocab"  # Rows of an embedding table (ids, hash buckets).
EMBED = "embed"  # Width of embeddings and hidden activations.
SEQ = "seq"  # Positions in an id sequence (history, text tokens).
HEADS = "heads"  # Attention heads.
MLP = "mlp"  # Hidden units of a feed-forward layer.
EXPERT = "expert"  # Experts of a mixture-of-experts layer.
TASK = "task"  # Task towers / heads of a multi-task ranker.
CANDIDATE = "candidate"  # Candidate items scored per request.

# (logical name, mesh axis or None) pairs, in flax's `LogicalRules` format.
LogicalRules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Batches split over `data`; every parameter replicated on every device.
DATA_PARALLEL: LogicalRules = (
    (BATCH, DATA_AXIS),
    (VOCAB, None),
    (EMBED, None),
    (SEQ, None),
    (HEADS, None),
    (MLP, None),
    (EXPERT, None),
    (TASK, None),
    (CANDIDATE, None),
)

# Batches split over `data`; embedding table rows split over `model`; dense layers replicated.
TABLE_SHARDED: LogicalRules = (
    (BATCH, DATA_AXIS),
    (VOCAB, MODEL_AXIS),
    (EMBED, None),
    (SEQ, None),
    (HEADS, None),
    (MLP, None),
    (EXPERT, None),
    (TASK, None),
    (CANDIDATE, None),
)


def logical_shardings(mesh: Mesh, abstract_tree: Any, rules: LogicalRules) -> Any:
    """`NamedSharding`s for a tree of logically annotated (boxed) arrays or shape structs.

    `abstract_tree` is typically `jax.eval_shape(model.init, ...)`: leaves boxed in
    `nn.LogicallyPartitioned` follow `rules`, plain leaves are replicated. The result
    has one sharding where each box or plain leaf was, so it serves directly as the
    `out_shardings` of the jitted init. A dimension that its mesh axes do not divide
    stays unsharded (jit cannot split it evenly): size tables to a multiple of the
    `model` axis to split them.
    """
    logical_specs = nn.get_partition_spec(abstract_tree)
    shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
    return jax.tree.map(
        lambda sharding, leaf: _divisible(sharding, leaf.shape),
        shardings,
        nn.meta.unbox(abstract_tree),
    )


def _divisible(sharding: NamedSharding, shape: tuple[int, ...]) -> NamedSharding:
    """`sharding` without the mesh axes that do not divide their dimension."""
    axes_per_dim = []
    # A spec may be shorter than the shape; the dimensions it leaves out are unsharded.
    for size, axes in zip(shape, sharding.spec, strict=False):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        parts = math.prod(sharding.mesh.shape[name] for name in names)
        axes_per_dim.append(axes if size % parts == 0 else None)
    return NamedSharding(sharding.mesh, PartitionSpec(*axes_per_dim))
