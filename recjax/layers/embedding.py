"""Embedding tables (plain, hashed, quotient–remainder) and bag pooling of multi-valent ids.

Letters in array names: b = batch, s = sequence, n = ids per bag, d = features.

Every table's parameter is named `embedding` and annotated with the logical axes
(VOCAB, EMBED), so a rule table decides whether its rows are split over the mesh.

Ids on device are int32, JAX's default: `jax_enable_x64` would double every index and
change dtype promotion everywhere, and without it an int64 array passed to jit is
silently truncated to its low 32 bits. Id spaces up to 2^31 (100M ids, say) are int32
already; 64-bit or string raw ids go through `fold_raw_ids` on the host first, which
hashes them stably (`recjax.data.hashing`) into int32.

References: Weinberger et al., "Feature Hashing for Large Scale Multitask Learning"
(ICML 2009); Shi et al., "Compositional Embeddings Using Complementary Partitions for
Memory-Efficient Recommendation Systems" (KDD 2020).
"""

from __future__ import annotations

from typing import Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.nn.initializers import Initializer
from jax.typing import DTypeLike

from recjax.data.hashing import hash_to_buckets
from recjax.data.vocab import PAD
from recjax.sharding.logical import EMBED, VOCAB

Combiner = Literal["sum", "mean", "sqrtn"]

_INT32_MAX = np.iinfo(np.int32).max
# Same as nn.Embed: rows start with variance 1 / features.
_DEFAULT_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


def combine_bag(
    rows_bnd: jax.Array,
    ids_bn: jax.Array,
    weights_bn: jax.Array | None = None,
    combiner: Combiner = "sum",
) -> jax.Array:
    """Pools each bag's rows [b, n, d] into one vector [b, d], ignoring PAD ids.

    With weights w (ones by default, zero at PAD): "sum" is Σ w·e, "mean" Σ w·e / Σ w and
    "sqrtn" Σ w·e / sqrt(Σ w²), as TensorFlow's `embedding_lookup_sparse`. An
    all-padding bag pools to zeros, with finite gradients.
    """
    if combiner not in get_args(Combiner):
        raise ValueError(f"combiner must be one of {get_args(Combiner)}, got {combiner!r}.")
    if weights_bn is None:
        weights_bn = jnp.ones(ids_bn.shape, rows_bnd.dtype)
    weights_bn = jnp.where(ids_bn != PAD, weights_bn.astype(rows_bnd.dtype), 0)
    total_bd = jnp.einsum("...n,...nd->...d", weights_bn, rows_bnd)
    if combiner == "sum":
        return total_bd
    norm_b = weights_bn.sum(axis=-1) if combiner == "mean" else jnp.square(weights_bn).sum(axis=-1)
    # An empty bag divides by 1: its total is 0 already, and the untaken branch keeps
    # the division (and sqrt's infinite slope at 0) out of the gradient.
    norm_b = jnp.where(norm_b != 0, norm_b, 1)
    if combiner == "sqrtn":
        norm_b = jnp.sqrt(norm_b)
    return total_bd / norm_b[..., None]


class EmbeddingTable(nn.Module):
    """A [num_embeddings, features] table looked up by int ids, rows on logical axis VOCAB."""

    num_embeddings: int  # Rows, PAD (0) included.
    features: int  # Width d of each row.
    dtype: DTypeLike = jnp.float32  # dtype of the rows returned.
    param_dtype: DTypeLike = jnp.float32  # dtype of the stored table.
    embedding_init: Initializer = _DEFAULT_INIT  # Initialiser of the whole table.

    def setup(self) -> None:
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(self.embedding_init, (VOCAB, EMBED)),
            (self.num_embeddings, self.features),
            self.param_dtype,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Rows of `ids` ([b] or [b, s]) as [..., d].

        PAD gets its row like any id (pooling masks it). Out-of-range ids give NaN rows
        (`jnp.take`'s fill mode), so a bad index cannot pass unnoticed.
        """
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"Embedding ids must be integers, got {ids.dtype}.")
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def bag(
        self, ids_bn: jax.Array, weights_bn: jax.Array | None = None, combiner: Combiner = "sum"
    ) -> jax.Array:
        """One [b, d] vector per bag of ids [b, n]; see `combine_bag`."""
        return combine_bag(self(ids_bn), ids_bn, weights_bn, combiner)


def fold_raw_ids(raw_ids: np.ndarray) -> np.ndarray:
    """Host side: integer (int64 too) or string raw ids → stable int32 ids in [1, 2^31 - 1].

    Never PAD, so pad after folding. Distinct raw ids collide here with probability
    about 1 / 2^31 per pair, far below the table's own hashing collisions.
    """
    return 1 + hash_to_buckets(np.asarray(raw_ids), _INT32_MAX)


def hashed_rows(ids: jax.Array, num_buckets: int) -> jax.Array:
    """Int32 ids → rows of a `num_buckets`-row table: PAD → 0, any other id → [1, num_buckets).

    The mix is MurmurHash3's 32-bit finaliser, a fixed bijection of uint32 in integer
    ops only, so it is jittable, identical on every backend, and spreads even
    consecutive ids over the rows.
    """
    if not 2 <= num_buckets <= _INT32_MAX + 1:
        raise ValueError(f"num_buckets must be in [2, 2^31], got {num_buckets}.")
    ids = jnp.asarray(ids)
    if ids.dtype != jnp.int32:
        raise TypeError(f"Hashed ids must be int32 (see fold_raw_ids), got {ids.dtype}.")
    h = jax.lax.bitcast_convert_type(ids, jnp.uint32)
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    rows = 1 + (h % jnp.uint32(num_buckets - 1)).astype(jnp.int32)
    return jnp.where(ids == PAD, PAD, rows)


def collision_rate(ids: np.ndarray, num_buckets: int) -> float:
    """Share of the distinct non-PAD `ids` whose `hashed_rows` row also holds another one."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got {ids.dtype}.")
    distinct = np.unique(ids[ids != PAD])
    if distinct.size == 0:
        return 0.0
    if distinct[0] < np.iinfo(np.int32).min or distinct[-1] > _INT32_MAX:
        raise ValueError("ids exceed int32: fold them with fold_raw_ids first.")
    rows = np.asarray(hashed_rows(distinct.astype(np.int32), num_buckets))
    _, row_of_id, ids_per_row = np.unique(rows, return_inverse=True, return_counts=True)
    return float(np.mean(ids_per_row[row_of_id] > 1))


class HashedEmbedding(nn.Module):
    """The hashing trick: int32 ids of any range share a `num_buckets`-row table.

    Row 0 stays PAD's, so ids spread over `num_buckets - 1` rows and distinct ids can
    share one (`collision_rate` measures how many). Parameter: `table/embedding`.
    """

    num_buckets: int  # Rows of the table, PAD's row 0 included.
    features: int  # Width d of each row.
    dtype: DTypeLike = jnp.float32  # dtype of the rows returned.
    param_dtype: DTypeLike = jnp.float32  # dtype of the stored table.
    embedding_init: Initializer = _DEFAULT_INIT  # Initialiser of the whole table.

    def setup(self) -> None:
        self.table = EmbeddingTable(
            num_embeddings=self.num_buckets,
            features=self.features,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=self.embedding_init,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Rows of int32 `ids` ([b] or [b, s]) as [..., d]."""
        return self.table(hashed_rows(ids, self.num_buckets))

    def bag(
        self, ids_bn: jax.Array, weights_bn: jax.Array | None = None, combiner: Combiner = "sum"
    ) -> jax.Array:
        """One [b, d] vector per bag of ids [b, n]; see `combine_bag`."""
        return combine_bag(self(ids_bn), ids_bn, weights_bn, combiner)


def qr_indices(ids: jax.Array, num_remainders: int) -> tuple[jax.Array, jax.Array]:
    """(id // m, id % m): distinct ids get distinct pairs, since id = quotient·m + remainder."""
    ids = jnp.asarray(ids)
    return ids // num_remainders, ids % num_remainders


class QREmbedding(nn.Module):
    """Ids in [0, V) as the product (or sum) of a quotient row and a remainder row.

    The quotient and remainder are complementary partitions: no two ids share both
    rows, so unlike hashing every id keeps its own vector, from ceil(V / m) + m rows
    (V = 1e8, m = 1e4: 20,000 rows). Parameters: `quotient/embedding`,
    `remainder/embedding`.
    """

    num_embeddings: int  # Size V of the id space, PAD (0) included.
    num_remainders: int  # m, rows of the remainder table; the quotient table has ceil(V / m).
    features: int  # Width d of each row.
    operation: Literal["product", "sum"] = "product"  # How the two rows combine.
    dtype: DTypeLike = jnp.float32  # dtype of the rows returned.
    param_dtype: DTypeLike = jnp.float32  # dtype of the stored tables.
    embedding_init: Initializer = _DEFAULT_INIT  # Initialiser of each table.

    def setup(self) -> None:
        if self.operation not in ("product", "sum"):
            raise ValueError(f"operation must be 'product' or 'sum', got {self.operation!r}.")
        table = dict(
            features=self.features,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=self.embedding_init,
        )
        num_quotients = -(-self.num_embeddings // self.num_remainders)
        self.quotient = EmbeddingTable(num_embeddings=num_quotients, **table)
        self.remainder = EmbeddingTable(num_embeddings=self.num_remainders, **table)

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Vectors of `ids` ([b] or [b, s]) as [..., d]."""
        quotient, remainder = qr_indices(ids, self.num_remainders)
        quotient_rows, remainder_rows = self.quotient(quotient), self.remainder(remainder)
        if self.operation == "product":
            return quotient_rows * remainder_rows
        return quotient_rows + remainder_rows

    def bag(
        self, ids_bn: jax.Array, weights_bn: jax.Array | None = None, combiner: Combiner = "sum"
    ) -> jax.Array:
        """One [b, d] vector per bag of ids [b, n]; see `combine_bag`."""
        return combine_bag(self(ids_bn), ids_bn, weights_bn, combiner)
