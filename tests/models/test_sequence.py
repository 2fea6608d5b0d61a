"""Sequence encoders: masking, causality, packing isolation, no NaN on empty rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.layers.attention import causal_segment_mask, log_time_buckets
from recjax.models.sequence import (
    ARCHITECTURES,
    ItemTokens,
    SequenceEncoder,
    SequenceEncoderConfig,
)

LENGTH = 8


def _model(architecture: str, **overrides) -> SequenceEncoder:
    config = SequenceEncoderConfig(
        architecture=architecture,
        embedding_dim=16,
        num_heads=2,
        feedforward_dim=32,
        **overrides,
    )
    return SequenceEncoder(config=config, num_items=40, max_length=LENGTH, first_item=2)


def _packed(items_row: list[int], segments_row: list[int]) -> dict[str, jnp.ndarray]:
    """One packed row; positions counted from each segment's start, events 100 s apart."""
    segment = np.asarray(segments_row)
    position = np.zeros(LENGTH, np.int32)
    age = np.zeros(LENGTH, np.int32)
    for value in set(segments_row) - {0}:
        where = np.flatnonzero(segment == value)
        position[where] = np.arange(len(where))
        age[where] = 100 * np.arange(len(where) - 1, -1, -1)
    return {
        "items": jnp.asarray([items_row], jnp.int32),
        "segment": jnp.asarray([segments_row], jnp.int32),
        "position": jnp.asarray([position]),
        "age": jnp.asarray([age], jnp.int32),
        "event_type": jnp.zeros((1, LENGTH), jnp.int32),
    }


def _init_and_apply(model, batch):
    params = model.init(jax.random.PRNGKey(0), batch)["params"]
    return params, lambda b: model.apply({"params": params}, b)[0]


def test_causal_segment_mask_known_answer():
    mask = causal_segment_mask(jnp.asarray([[1, 1, 2, 2, 0]]))[0]
    expected = np.array(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 1],  # padding sees only itself; nobody sees padding
        ],
        bool,
    )
    np.testing.assert_array_equal(np.asarray(mask), expected)


def test_log_time_buckets():
    gaps = jnp.asarray([0, 1, 2, 3, 4, 1023, 1024, 10**9])
    np.testing.assert_array_equal(
        np.asarray(log_time_buckets(gaps, 12)), [0, 1, 2, 2, 3, 10, 11, 11]
    )


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_no_position_sees_the_future(architecture):
    model = _model(architecture, time_features=True)
    batch = _packed([5, 6, 7, 8, 9, 10, 11, 12], [1] * LENGTH)
    _, apply = _init_and_apply(model, batch)
    changed = dict(batch, items=batch["items"].at[0, 5:].set(30))
    before, after = apply(batch), apply(changed)
    np.testing.assert_allclose(before[0, :5], after[0, :5], atol=1e-5)
    assert not np.allclose(before[0, 5:], after[0, 5:], atol=1e-3)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_packed_sequences_and_padding_are_isolated(architecture):
    model = _model(architecture, time_features=True)
    batch = _packed([5, 6, 7, 20, 21, 22, 0, 0], [1, 1, 1, 2, 2, 2, 0, 0])
    _, apply = _init_and_apply(model, batch)
    reference = apply(batch)
    other_user = dict(batch, items=batch["items"].at[0, 3:6].set(jnp.asarray([33, 34, 35])))
    other_padding = dict(batch, items=batch["items"].at[0, 6:].set(17))
    np.testing.assert_allclose(reference[0, :3], apply(other_user)[0, :3], atol=1e-5)
    np.testing.assert_allclose(reference[0, :6], apply(other_padding)[0, :6], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(reference[0, 6:]), 0.0)  # padding outputs zero
    # A packed segment equals the same sequence alone in a row.
    alone = _packed([20, 21, 22, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(reference[0, 3:6], apply(alone)[0, :3], atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_query_vector_is_the_last_training_position(architecture):
    """Serving a left-padded history gives the state training computed at its end."""
    model = _model(architecture)
    batch = _packed([5, 6, 7, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0])
    params, apply = _init_and_apply(model, batch)
    history = jnp.asarray([[0, 0, 0, 0, 0, 5, 6, 7], [0] * LENGTH], jnp.int32)
    queries = model.apply(
        {"params": params},
        jnp.zeros(2, jnp.int32),
        history,
        jnp.zeros(2, jnp.int32),
        method="encode_users",
    )
    np.testing.assert_allclose(queries[0], apply(batch)[0, 2], atol=1e-5)
    assert np.isfinite(np.asarray(queries[1])).all()  # empty history: no NaN


@pytest.mark.parametrize("time_features", [False, True])
def test_time_gaps_matter_only_with_time_features(time_features):
    batch = _packed([5, 6, 7, 8, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    slower = dict(batch, age=batch["age"] * 1000)  # same order, gaps 1000x longer
    _, apply = _init_and_apply(_model("hstu", time_features=time_features), batch)
    same = np.allclose(apply(batch), apply(slower), atol=1e-6)
    assert same != time_features


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="Unknown architecture 'gru'"):
        SequenceEncoderConfig(architecture="gru")


def test_item_features_add_the_mean_of_each_items_token_rows():
    tokens = np.zeros((40, 3), np.int32)
    tokens[5] = [1, 2, 0]  # Item 5: tokens 1 and 2; item 6: token 2; item 7: none.
    tokens[6] = [2, 0, 0]
    model = SequenceEncoder(
        config=SequenceEncoderConfig(embedding_dim=16, item_features=True),
        num_items=40,
        max_length=LENGTH,
        item_tokens=ItemTokens(tokens, num_buckets=8),
    )
    params = model.init(jax.random.PRNGKey(0), _packed([5, 6, 7, 0, 0, 0, 0, 0], [1] * 3 + [0] * 5))
    ids, rows = (
        params["params"]["item_embedding"]["embedding"],
        params["params"]["token_embedding"]["embedding"],
    )
    vectors = model.apply(params, jnp.asarray([5, 6, 7]), method="encode_items")
    expected = ids[5:8] + jnp.stack([(rows[1] + rows[2]) / 2, rows[2], jnp.zeros(16)])
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    # Training scores read the same vectors as the item tower.
    _, items_nd = model.apply(params, _packed([5, 6, 7, 0, 0, 0, 0, 0], [1] * 3 + [0] * 5))
    np.testing.assert_allclose(items_nd[5:8], expected, rtol=1e-6)


def test_item_features_need_one_token_row_per_item():
    model = SequenceEncoder(
        config=SequenceEncoderConfig(item_features=True), num_items=40, max_length=LENGTH
    )
    with pytest.raises(ValueError, match="item_features needs item_tokens with 40 rows"):
        model.init(jax.random.PRNGKey(0), _packed([5] + [0] * 7, [1] + [0] * 7))
