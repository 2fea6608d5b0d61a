"""Per-task metrics of a multi-task ranker: AUC, log loss, calibration, RMSE.

Every function takes a mask: examples whose label is missing for the task are left out.
Plain numpy over host arrays (evaluation runs once per epoch, not per step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from recjax.losses.multitask import TaskSpec

_EPS = 1e-7  # Probabilities are clipped to [eps, 1 - eps] for the log loss.


def _masked(mask: np.ndarray | None, *arrays: np.ndarray) -> list[np.ndarray]:
    keep = np.ones(len(arrays[0]), bool) if mask is None else np.asarray(mask, bool)
    return [np.asarray(array)[keep] for array in arrays]


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    group_rank = (starts + 1 + ends) / 2.0  # Mean of ranks starts+1 .. ends.
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def auc(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """ROC AUC: P(score of a random positive > score of a random negative), ties count 1/2.

    NaN when the unmasked labels hold only one class.
    """
    scores, labels = _masked(mask, scores, labels)
    positive = labels > 0.5
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    # Mann-Whitney U from average ranks: each tie contributes exactly one half.
    rank_sum = average_ranks(np.asarray(scores, np.float64))[positive].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def log_loss(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean binary cross-entropy of probabilities (natural log); NaN if nothing is unmasked."""
    probs, labels = _masked(mask, probs, labels)
    if not len(probs):
        return float("nan")
    p = np.clip(np.asarray(probs, np.float64), _EPS, 1 - _EPS)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration(
    probs: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None, num_buckets: int = 10
) -> dict[str, np.ndarray | float]:
    """Predicted vs observed rate in equal-width probability buckets, and the ECE.

    Bucket k holds probabilities in [k/B, (k+1)/B) (the last one includes 1).

    Returns:
      `count` [B], `predicted` [B] (mean probability) and `observed` [B] (positive
      rate; NaN for empty buckets), and `ece`: Σ_k count_k / n · |predicted_k -
      observed_k| (expected calibration error, NaN if nothing is unmasked).
    """
    probs, labels = _masked(mask, probs, labels)
    probs = np.asarray(probs, np.float64)
    bucket = np.clip((probs * num_buckets).astype(np.int64), 0, num_buckets - 1)
    count = np.bincount(bucket, minlength=num_buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(bucket, probs, num_buckets) / count
        observed = np.bincount(bucket, np.asarray(labels, np.float64), num_buckets) / count
    filled = count > 0
    ece = (
        float(np.sum(count[filled] * np.abs(predicted[filled] - observed[filled])) / len(probs))
        if len(probs)
        else float("nan")
    )
    return {"count": count, "predicted": predicted, "observed": observed, "ece": ece}


def rmse(predictions: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error; NaN if nothing is unmasked."""
    predictions, targets = _masked(mask, predictions, targets)
    if not len(predictions):
        return float("nan")
    diff = np.asarray(predictions, np.float64) - np.asarray(targets, np.float64)
    return float(np.sqrt(np.mean(np.square(diff))))


def task_metrics(
    tasks: Sequence[TaskSpec],
    outputs: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Flat `task/metric` dict: binary heads get auc, log_loss, ece, positive_rate and
    mean_prediction; regression heads rmse and the rmse of predicting the label mean
    (`rmse_constant`, the bar to beat). Every head reports its `count` of labels.

    Args:
      tasks: the heads.
      outputs: task -> [n] logits (binary) or predictions (regression).
      labels, masks: task -> [n] labels and bool masks, as in training.
    """
    metrics: dict[str, float] = {}
    for task in tasks:
        output, label, mask = (np.asarray(x[task.name]) for x in (outputs, labels, masks))
        metrics[f"{task.name}/count"] = float(mask.sum())
        if task.kind == "binary":
            probs = 1.0 / (1.0 + np.exp(-output.astype(np.float64)))
            metrics[f"{task.name}/auc"] = auc(probs, label, mask)
            metrics[f"{task.name}/log_loss"] = log_loss(probs, label, mask)
            metrics[f"{task.name}/ece"] = float(calibration(probs, label, mask)["ece"])
            metrics[f"{task.name}/positive_rate"] = float(label[mask].mean()) if mask.any() else 0
            metrics[f"{task.name}/mean_prediction"] = float(probs[mask].mean()) if mask.any() else 0
        else:
            metrics[f"{task.name}/rmse"] = rmse(output, label, mask)
            constant = np.full(len(label), label[mask].mean() if mask.any() else 0.0)
            metrics[f"{task.name}/rmse_constant"] = rmse(constant, label, mask)
    return metrics
