"""Stable hashing and vocabularies: values fixed across processes, layout, OOV, round trips."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from recjax.data.hashing import hash_to_buckets, stable_hash
from recjax.data.vocab import PAD, Vocabulary

INTS = [0, 1, -1, 12346, 2**40]
STRINGS = ["", "a", "red", "héllo", "日本", "85123A"]
# Computed once with recjax and checked against the pure-Python FNV-1a below: if these
# change, every hashed bucket (OOV ids, text tokens) of every trained model moves.
INT_HASHES = [
    3136886941265041739,
    632908417880113564,
    12805878609059581702,
    6653433072509918001,
    13573890017254316363,
]
STRING_HASHES = [
    14695981039346656037,
    12638187200555641996,
    9937683068979823132,
    803281756967761087,
    9320892155997987972,
    4359830775492328649,
]

_MASK = 2**64 - 1


def fnv1a_reference(text: str) -> int:
    """Textbook 64-bit FNV-1a over the code points of `text`."""
    hashed = 0xCBF29CE484222325
    for char in text:
        hashed = ((hashed ^ ord(char)) * 0x100000001B3) & _MASK
    return hashed


def int_reference(value: int) -> int:
    mixed = (int(value) & _MASK) ^ 0xCBF29CE484222325
    return (mixed * 0x100000001B3 * 0x9E3779B97F4A7C15) & _MASK


def test_hash_values_are_fixed():
    assert stable_hash(np.array(INTS, dtype=np.int64)).tolist() == INT_HASHES
    assert stable_hash(np.array(STRINGS)).tolist() == STRING_HASHES
    assert [int_reference(v) for v in INTS] == INT_HASHES
    assert [fnv1a_reference(s) for s in STRINGS] == STRING_HASHES


def test_hash_is_the_same_in_another_process():
    script = (
        "import json, numpy as np\n"
        "from recjax.data.hashing import stable_hash\n"
        f"ints = stable_hash(np.array({INTS!r}, dtype=np.int64)).tolist()\n"
        f"strings = stable_hash(np.array({STRINGS!r})).tolist()\n"
        f"print(json.dumps([ints, strings, hash({STRINGS[2]!r})]))\n"
    )
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
        ).stdout
        runs.append(json.loads(out))
    # Python's own str hash does move with the seed: the processes really differ.
    assert runs[0][2] != runs[1][2]
    for ints, strings, _ in runs:
        assert ints == INT_HASHES
        assert strings == STRING_HASHES


def test_string_hash_does_not_depend_on_array_width():
    alone = stable_hash(np.array(["red"]))
    padded = stable_hash(np.array(["red", "lantern holder"]))  # dtype <U14: NUL padding
    assert alone[0] == padded[0] == fnv1a_reference("red")
    assert (
        hash_to_buckets(np.array(["red"]), 8191)[0]
        == hash_to_buckets(np.array(["lantern", "red"]), 8191)[1]
    )


def test_int_hash_does_not_depend_on_dtype():
    np.testing.assert_array_equal(
        stable_hash(np.array([5, -3], dtype=np.int32)),
        stable_hash(np.array([5, -3], dtype=np.int64)),
    )


def test_hash_to_buckets_range_and_values():
    np.testing.assert_array_equal(hash_to_buckets(np.array(INTS), 7), [h % 7 for h in INT_HASHES])
    np.testing.assert_array_equal(
        hash_to_buckets(np.array(STRINGS), 7), [h % 7 for h in STRING_HASHES]
    )
    buckets = hash_to_buckets(np.arange(10_000), 13)
    assert buckets.dtype == np.int32
    assert buckets.min() == 0 and buckets.max() == 12
    assert len(np.unique(buckets)) == 13
    words = np.array([f"word{i}" for i in range(2000)])
    assert set(hash_to_buckets(words, 5).tolist()) == {0, 1, 2, 3, 4}


def test_hash_rejects_bad_input():
    with pytest.raises(ValueError, match="num_buckets"):
        hash_to_buckets(np.array([1]), 0)
    with pytest.raises(TypeError, match="float"):
        stable_hash(np.array([1.5]))


def test_vocabulary_layout_int_ids():
    vocab = Vocabulary.build(np.array([30, 10, 20, 10, 30]), num_oov_buckets=2)
    # [PAD, OOV0, OOV1, 10, 20, 30]
    assert PAD == 0
    assert vocab.first_known == 3
    assert len(vocab) == 6
    np.testing.assert_array_equal(vocab.ids, [10, 20, 30])
    np.testing.assert_array_equal(vocab.lookup(np.array([20, 10, 30, 30])), [4, 3, 5, 5])
    assert vocab.lookup(np.array([10])).dtype == np.int32


def test_vocabulary_layout_string_ids():
    vocab = Vocabulary.build(np.array(["b", "a", "ccc", "a"]))  # one OOV bucket by default
    np.testing.assert_array_equal(vocab.ids, ["a", "b", "ccc"])
    assert len(vocab) == 5
    np.testing.assert_array_equal(vocab.lookup(np.array(["ccc", "a", "b"])), [4, 2, 3])


def test_unseen_ids_go_to_their_hashed_oov_bucket():
    vocab = Vocabulary.build(np.array([10, 20, 30]), num_oov_buckets=3)
    unseen = np.array([11, 99, 12345, -7])
    indices = vocab.lookup(unseen)
    np.testing.assert_array_equal(indices, 1 + np.array([int_reference(v) % 3 for v in unseen]))
    assert ((indices >= 1) & (indices < vocab.first_known)).all()
    # The same id lands in the same bucket whatever it is looked up with.
    mixed = vocab.lookup(np.array([20, 99, 10, 11]))
    np.testing.assert_array_equal(mixed, [5, indices[1], 4, indices[0]])

    text = Vocabulary.build(np.array(["apple", "pear"]), num_oov_buckets=4)
    alone = text.lookup(np.array(["kiwi"]))[0]
    assert alone == 1 + fnv1a_reference("kiwi") % 4
    assert text.lookup(np.array(["pear", "a much longer unseen id", "kiwi"]))[2] == alone


def test_no_oov_buckets_raises_for_unknown_ids():
    vocab = Vocabulary.build(np.array([1, 2]), num_oov_buckets=0)
    assert vocab.first_known == 1
    np.testing.assert_array_equal(vocab.lookup(np.array([2, 1])), [2, 1])
    with pytest.raises(KeyError, match="Unknown id 3 and"):
        vocab.lookup(np.array([1, 3]))


def test_lookup_with_another_dtype_raises():
    with pytest.raises(TypeError, match="holds"):
        Vocabulary.build(np.array(["a", "b"])).lookup(np.array([1]))
    with pytest.raises(TypeError, match="holds"):
        Vocabulary.build(np.array([1, 2])).contains(np.array(["1"]))


def test_raw_round_trip_and_padding_or_oov_raise():
    ids = np.array(["x", "yy", "z"])
    vocab = Vocabulary.build(ids, num_oov_buckets=2)
    np.testing.assert_array_equal(vocab.raw(vocab.lookup(ids)), ids)
    np.testing.assert_array_equal(vocab.raw(np.array([5, 3])), ["z", "x"])
    for index in (PAD, 1, 2):
        with pytest.raises(KeyError, match="Padding and OOV"):
            vocab.raw(np.array([3, index]))


def test_contains():
    vocab = Vocabulary.build(np.array([5, 1, 9]))
    np.testing.assert_array_equal(
        vocab.contains(np.array([1, 2, 9, 10, 0])), [True, False, True, False, False]
    )
    empty = Vocabulary.build(np.zeros(0, dtype=np.int64))
    np.testing.assert_array_equal(empty.contains(np.array([1])), [False])
    assert empty.lookup(np.array([7]))[0] == 1  # the only OOV bucket
