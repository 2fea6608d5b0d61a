"""Embedding tables: known lookups and bags, hashing, quotient–remainder, logical sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from recjax.layers.embedding import (
    EmbeddingTable,
    HashedEmbedding,
    QREmbedding,
    collision_rate,
    combine_bag,
    fold_raw_ids,
    hashed_rows,
    qr_indices,
)
from recjax.sharding.logical import (
    BATCH,
    CANDIDATE,
    DATA_PARALLEL,
    EMBED,
    EXPERT,
    HEADS,
    MLP,
    SEQ,
    TABLE_SHARDED,
    TASK,
    VOCAB,
    logical_shardings,
)
from recjax.sharding.mesh import MeshConfig, batch_sharding, make_mesh

KEY = jax.random.key(0)
TABLE = np.arange(20, dtype=np.float32).reshape(5, 4)  # row i = [4i, 4i+1, 4i+2, 4i+3]
BAG_IDS = np.array([[1, 2, 0], [3, 0, 0], [0, 0, 0]], np.int32)
BAG_WEIGHTS = np.array([[2.0, 0.5, 9.0], [3.0, 7.0, 7.0], [1.0, 1.0, 1.0]], np.float32)


def _fmix32(x: int) -> int:
    """MurmurHash3's finaliser in plain Python, the reference for `hashed_rows`."""
    x &= 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    x = ((x ^ (x >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _apply(method, ids, *args, **kwargs):
    table = EmbeddingTable(num_embeddings=5, features=4)
    return table.apply({"params": {"embedding": TABLE}}, ids, *args, method=method, **kwargs)


def test_lookup_returns_table_rows_for_ids_and_sequences():
    ids_b = np.array([3, 0, 1], np.int32)
    ids_bs = np.array([[1, 2, 0], [4, 4, 0]], np.int32)
    np.testing.assert_array_equal(_apply(EmbeddingTable.__call__, ids_b), TABLE[ids_b])
    np.testing.assert_array_equal(_apply(EmbeddingTable.__call__, ids_bs), TABLE[ids_bs])
    with pytest.raises(TypeError, match="integers"):
        _apply(EmbeddingTable.__call__, np.array([1.0]))


@pytest.mark.parametrize(
    ("combiner", "weighted", "expected"),
    [
        ("sum", True, [2 * TABLE[1] + 0.5 * TABLE[2], 3 * TABLE[3], np.zeros(4)]),
        ("mean", True, [(2 * TABLE[1] + 0.5 * TABLE[2]) / 2.5, TABLE[3], np.zeros(4)]),
        ("sqrtn", True, [(2 * TABLE[1] + 0.5 * TABLE[2]) / 4.25**0.5, TABLE[3], np.zeros(4)]),
        ("sum", False, [TABLE[1] + TABLE[2], TABLE[3], np.zeros(4)]),
        ("mean", False, [(TABLE[1] + TABLE[2]) / 2, TABLE[3], np.zeros(4)]),
        ("sqrtn", False, [(TABLE[1] + TABLE[2]) / 2**0.5, TABLE[3], np.zeros(4)]),
    ],
)
def test_bag_combiners_ignore_padding(combiner, weighted, expected):
    weights = BAG_WEIGHTS if weighted else None
    pooled = _apply(EmbeddingTable.bag, BAG_IDS, weights, combiner)
    np.testing.assert_allclose(pooled, np.stack(expected), rtol=1e-6)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_empty_bag_has_finite_gradients(combiner):
    def loss(table, weights):
        return combine_bag(table[BAG_IDS], BAG_IDS, weights, combiner).sum()

    grad_table, grad_weights = jax.grad(loss, argnums=(0, 1))(jnp.asarray(TABLE), BAG_WEIGHTS)
    assert np.isfinite(grad_table).all() and np.isfinite(grad_weights).all()
    np.testing.assert_array_equal(grad_weights[2], 0.0)  # the all-padding bag
    np.testing.assert_array_equal(grad_weights[:, -1], 0.0)  # PAD positions


def test_unknown_combiner_is_an_error():
    with pytest.raises(ValueError, match="combiner"):
        combine_bag(jnp.zeros((1, 1, 2)), jnp.ones((1, 1), jnp.int32), combiner="max")


def test_hashed_rows_match_reference_and_keep_pad():
    ids = np.array([0, 1, 2, 7, 123_456_789, -5, np.iinfo(np.int32).max], np.int32)
    expected = [0] + [1 + _fmix32(int(i)) % 999 for i in ids[1:]]
    rows = hashed_rows(ids, 1000)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(jax.jit(hashed_rows, static_argnums=1)(ids, 1000), rows)
    with pytest.raises(TypeError, match="int32"):
        hashed_rows(np.array([1.5]), 1000)


def test_hashed_rows_stay_in_range():
    ids = np.random.default_rng(0).integers(1, 2**31 - 1, size=10_000, dtype=np.int32)
    rows = np.asarray(hashed_rows(ids, 64))
    assert rows.min() >= 1 and rows.max() <= 63
    assert len(np.unique(rows)) == 63  # every non-PAD row is used


def test_fold_raw_ids_is_stable_int32_and_never_pad():
    raw = np.array([0, 1, 2**40, 2**63 - 1, -(2**62)], np.int64)
    folded = fold_raw_ids(raw)
    assert folded.dtype == np.int32 and (folded >= 1).all()
    np.testing.assert_array_equal(folded, fold_raw_ids(raw.copy()))
    assert len(np.unique(folded)) == len(raw)
    assert fold_raw_ids(np.array(["a", "b"])).dtype == np.int32


def test_collision_rate_on_known_examples():
    assert collision_rate(np.array([1, 2, 3, 3]), 2) == 1.0  # one usable row holds all three
    assert collision_rate(np.array([5, 5, 0, 0]), 2) == 0.0  # duplicates and PAD don't count
    ids = np.arange(1, 9)
    rows = [1 + _fmix32(int(i)) % 3 for i in ids]  # 8 ids in 3 rows
    expected = np.mean([rows.count(row) > 1 for row in rows])
    assert collision_rate(ids, 4) == expected
    with pytest.raises(ValueError, match="fold_raw_ids"):
        collision_rate(np.array([2**40]), 4)


def test_collision_rate_of_random_ids_matches_birthday_expectation():
    ids = np.random.default_rng(1).integers(1, 2**31 - 1, size=1_000_000)
    num_buckets = 2**20
    n, rows = len(np.unique(ids)), num_buckets - 1  # row 0 is PAD's
    expected = 1 - (1 - 1 / rows) ** (n - 1)
    np.testing.assert_allclose(collision_rate(ids, num_buckets), expected, atol=3e-3)


def test_hashed_embedding_looks_up_hashed_rows():
    layer = HashedEmbedding(num_buckets=8, features=3)
    ids = jnp.array([[0, 5, 2**30], [7, 0, 0]], jnp.int32)
    variables = layer.init(KEY, ids)
    table = variables["params"]["table"]["embedding"].value
    np.testing.assert_array_equal(layer.apply(variables, ids), table[hashed_rows(ids, 8)])
    pooled = layer.apply(variables, ids, None, "mean", method=HashedEmbedding.bag)
    np.testing.assert_allclose(pooled[1], table[hashed_rows(ids, 8)[1, 0]], rtol=1e-6)


def test_qr_tables_for_100m_ids_are_small():
    layer = QREmbedding(num_embeddings=100_000_000, num_remainders=10_000, features=16)
    params = jax.eval_shape(layer.init, KEY, jnp.zeros(1, jnp.int32))["params"]
    assert params["quotient"]["embedding"].value.shape == (10_000, 16)
    assert params["remainder"]["embedding"].value.shape == (10_000, 16)
    odd = QREmbedding(num_embeddings=100_000_001, num_remainders=4096, features=2)
    params = jax.eval_shape(odd.init, KEY, jnp.zeros(1, jnp.int32))["params"]
    assert params["quotient"]["embedding"].value.shape == (24_415, 2)  # ceil(V / m)


def test_qr_pairs_of_distinct_ids_are_distinct():
    ids = np.random.default_rng(2).choice(100_000_000, size=100_000, replace=False)
    quotient, remainder = map(np.asarray, qr_indices(ids.astype(np.int32), 10_000))
    assert len(np.unique(np.stack([quotient, remainder], axis=1), axis=0)) == len(ids)
    np.testing.assert_array_equal(quotient * 10_000 + remainder, ids)


@pytest.mark.parametrize("operation", ["product", "sum"])
def test_qr_embedding_runs_on_ids_near_1e8(operation):
    layer = QREmbedding(
        num_embeddings=100_000_000, num_remainders=10_000, features=4, operation=operation
    )
    ids = jnp.array([[99_999_999, 99_990_000, 0], [1, 10_001, 0]], jnp.int32)
    variables = layer.init(KEY, ids)
    vectors = jax.jit(layer.apply)(variables, ids)
    params = variables["params"]
    quotient = params["quotient"]["embedding"].value[ids // 10_000]
    remainder = params["remainder"]["embedding"].value[ids % 10_000]
    expected = quotient * remainder if operation == "product" else quotient + remainder
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert np.isfinite(layer.apply(variables, ids, method=QREmbedding.bag)).all()


def test_rule_tables_name_every_logical_axis_once():
    names = {BATCH, VOCAB, EMBED, SEQ, HEADS, MLP, EXPERT, TASK, CANDIDATE}
    for rules in (DATA_PARALLEL, TABLE_SHARDED):
        assert sorted(name for name, _ in rules) == sorted(names)


def _sharded_init(rules, num_embeddings=16):
    mesh = make_mesh(MeshConfig(data=2, model=4))
    table = EmbeddingTable(num_embeddings=num_embeddings, features=4)
    ids = jnp.array([1, 2, 3, 15, 0, 7, 8, 9], jnp.int32) % num_embeddings
    abstract = jax.eval_shape(table.init, KEY, ids)
    shardings = logical_shardings(mesh, abstract, rules)
    variables = jax.jit(table.init, out_shardings=shardings)(KEY, ids)
    return mesh, table, ids, variables


def test_table_sharded_rules_split_rows_over_model():
    _, _, _, variables = _sharded_init(TABLE_SHARDED)
    embedding = variables["params"]["embedding"].value
    assert embedding.sharding.spec == PartitionSpec("model", None)
    assert {shard.data.shape for shard in embedding.addressable_shards} == {(4, 4)}


def test_data_parallel_rules_replicate_the_table():
    _, _, _, variables = _sharded_init(DATA_PARALLEL)
    embedding = variables["params"]["embedding"].value
    assert embedding.sharding.is_fully_replicated
    assert {shard.data.shape for shard in embedding.addressable_shards} == {(16, 4)}


def test_rows_the_model_axis_does_not_divide_stay_whole():
    _, _, _, variables = _sharded_init(TABLE_SHARDED, num_embeddings=10)
    assert variables["params"]["embedding"].value.sharding.is_fully_replicated


def test_plain_leaves_are_replicated():
    mesh = make_mesh(MeshConfig(data=2, model=4))
    abstract = {"w": jax.ShapeDtypeStruct((8, 8), jnp.float32)}
    assert logical_shardings(mesh, abstract, TABLE_SHARDED) == {
        "w": NamedSharding(mesh, PartitionSpec())
    }


def test_lookup_on_sharded_table_equals_unsharded():
    mesh, table, ids, variables = _sharded_init(TABLE_SHARDED)
    unsharded = jax.device_get(variables)
    ids_bn = jax.device_put(ids.reshape(4, 2), batch_sharding(mesh))

    @jax.jit
    def lookup_and_bag(variables, ids_bn):
        rows_bnd = table.apply(variables, ids_bn)
        return rows_bnd, table.apply(variables, ids_bn, None, "sqrtn", method=EmbeddingTable.bag)

    sharded = lookup_and_bag(variables, ids_bn)
    plain = lookup_and_bag(unsharded, ids.reshape(4, 2))
    np.testing.assert_allclose(sharded[0], plain[0], rtol=1e-6)
    np.testing.assert_allclose(sharded[1], plain[1], rtol=1e-6)
