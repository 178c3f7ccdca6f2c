"""Metrics on score arrays: top-k, mean class accuracy, mAP, confusion matrix.

Scores are (N, K) arrays (logits or probabilities), labels (N,) ints, or (N, K)
multi-hot arrays for multi-label datasets. Every metric is returned in percent.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> Dict[int, float]:
    """Percentage of rows whose label is among the k highest scores, for each k."""
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    kmax = min(max(ks), scores.shape[1])
    top = np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax] if kmax < scores.shape[1] else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    # order the top-kmax columns by score so that top-k for k < kmax is a prefix
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    hits = top == labels[:, None]
    return {k: float(hits[:, : min(k, kmax)].any(axis=1).mean() * 100.0) if len(labels) else 0.0 for k in ks}


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted), every class present."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, preds, labels=np.arange(num_classes))


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class; a class with no samples gets NaN (reported as such, not averaged)."""
    counts = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.diag(cm) / np.maximum(counts, 1), np.nan) * 100.0


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP over classes for multi-label targets (N, K) in {0, 1}.

    AP of a class = mean precision at the rank of each positive (scores sorted
    descending); classes without positives are left out of the mean.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_t = np.take_along_axis(targets, order, axis=0)
    hits = np.cumsum(sorted_t, axis=0)
    ranks = np.arange(1, len(scores) + 1)[:, None]
    precision = hits / ranks
    positives = sorted_t.sum(axis=0)
    valid = positives > 0
    if not valid.any():
        return 0.0
    ap = (precision * sorted_t).sum(axis=0)[valid] / positives[valid]
    return float(ap.mean() * 100.0)


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = scores - scores.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)
