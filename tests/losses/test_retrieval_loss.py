"""Known answers for the sampled softmax: in-batch, logQ, accidental hits, extra negatives."""

import jax
import numpy as np
import pytest

from recjax.losses.retrieval import sampled_softmax_loss


def _reference(queries, candidates, labels, log_q, masked=()):
    """Cross-entropy of row i against candidate labels[i], by hand in float64."""
    logits = queries.astype(np.float64) @ candidates.T.astype(np.float64) - log_q[None, :]
    for row, column in masked:
        logits[row, column] = -np.inf
    losses = [
        np.log(np.exp(row - row.max()).sum()) + row.max() - row[label]
        for row, label in zip(logits, labels, strict=True)
    ]
    return float(np.mean(losses))


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)


def test_in_batch_softmax_matches_hand_computation(vectors):
    queries, positives = vectors
    loss = sampled_softmax_loss(
        queries, positives, np.arange(4), np.zeros(4, np.float32), temperature=1.0
    )
    expected = _reference(queries, positives, np.arange(4), np.zeros(4))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_temperature_scales_logits(vectors):
    queries, positives = vectors
    loss = sampled_softmax_loss(
        queries, positives, np.arange(4), np.zeros(4, np.float32), temperature=0.5
    )
    expected = _reference(queries * 2, positives, np.arange(4), np.zeros(4))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_log_q_correction_subtracts_per_candidate(vectors):
    queries, positives = vectors
    log_q = np.log(np.array([0.5, 0.1, 0.3, 0.1], np.float32))
    loss = sampled_softmax_loss(queries, positives, np.arange(4), log_q, temperature=1.0)
    np.testing.assert_allclose(loss, _reference(queries, positives, np.arange(4), log_q), rtol=1e-5)
    # A constant log Q shifts every logit of a row equally: no effect.
    constant = sampled_softmax_loss(
        queries, positives, np.arange(4), np.full(4, -3.0, np.float32), temperature=1.0
    )
    plain = sampled_softmax_loss(
        queries, positives, np.arange(4), np.zeros(4, np.float32), temperature=1.0
    )
    np.testing.assert_allclose(constant, plain, rtol=1e-6)


def test_accidental_hits_are_masked(vectors):
    queries, positives = vectors
    ids = np.array([7, 8, 7, 9])  # rows 0 and 2 have the same positive item
    loss = sampled_softmax_loss(queries, positives, ids, np.zeros(4, np.float32), temperature=1.0)
    expected = _reference(queries, positives, np.arange(4), np.zeros(4), masked=[(0, 2), (2, 0)])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    kept = sampled_softmax_loss(
        queries,
        positives,
        ids,
        np.zeros(4, np.float32),
        temperature=1.0,
        remove_accidental_hits=False,
    )
    np.testing.assert_allclose(
        kept, _reference(queries, positives, np.arange(4), np.zeros(4)), rtol=1e-5
    )


def test_extra_negatives_join_the_candidates(vectors):
    queries, positives = vectors
    negatives = np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32)
    negative_ids = np.array([8, 100, 101])  # 8 is row 1's positive: an accidental hit there
    log_q_pos = np.log(np.array([0.2, 0.2, 0.4, 0.2], np.float32))
    log_q_neg = np.full(3, np.log(3 / 50), np.float32)
    loss = sampled_softmax_loss(
        queries,
        positives,
        np.array([7, 8, 9, 10]),
        log_q_pos,
        temperature=1.0,
        negatives_md=negatives,
        negative_ids_m=negative_ids,
        negative_log_q_m=log_q_neg,
    )
    expected = _reference(
        queries,
        np.concatenate([positives, negatives]),
        np.arange(4),
        np.concatenate([log_q_pos, log_q_neg]),
        masked=[(1, 4)],
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_extra_negatives_need_ids_and_log_q(vectors):
    queries, positives = vectors
    with pytest.raises(ValueError, match="ids and log Q"):
        sampled_softmax_loss(
            queries,
            positives,
            np.arange(4),
            np.zeros(4, np.float32),
            temperature=1.0,
            negatives_md=positives,
        )


def test_perfectly_separated_batch_has_near_zero_loss():
    eye = np.eye(4, dtype=np.float32)
    loss = sampled_softmax_loss(eye, eye, np.arange(4), np.zeros(4, np.float32), temperature=0.01)
    assert float(loss) < 1e-6


def test_gradient_is_finite_with_masked_hits(vectors):
    queries, positives = vectors
    grad = jax.grad(
        lambda q: sampled_softmax_loss(
            q, positives, np.array([1, 1, 1, 1]), np.zeros(4, np.float32), temperature=1.0
        )
    )(queries)
    assert np.isfinite(np.asarray(grad)).all()
