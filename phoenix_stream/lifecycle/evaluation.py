"""Online evaluation metrics of a binary classifier from true labels and its outputs.

Pure functions, no I/O (``publish`` sets the Prometheus gauges). ``labels`` are the
true outcomes (0 or 1, from feedback), ``scores`` the served probabilities of class 1,
``predicted`` the served labels. They agree with ``sklearn.metrics`` (accuracy_score,
log_loss, brier_score_loss, roc_auc_score): log loss clips probabilities to [eps, 1 - eps]
as sklearn does, and AUC averages tied ranks. :class:`LabelledSums` holds what PostgreSQL
sums cheaply, so a store can compute everything but the AUC in SQL and build the same
:class:`VariantMetrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from phoenix_stream import metrics

__all__ = [
    "AUC_MIN_PER_CLASS",
    "LOG_LOSS_EPS",
    "LabelledSums",
    "VariantMetrics",
    "accuracy",
    "auc",
    "average_ranks",
    "brier",
    "log_loss",
    "log_loss_term",
    "positive_rate",
    "publish",
]

AUC_MIN_PER_CLASS = 50
"""Labels of each class (rows) below which AUC is not reported: with fewer, one ranking
flip moves it by 1/(n0 * n1) times the other class's count, and the number is noise."""

LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
"""Probabilities are clipped to [eps, 1 - eps] before the logarithm (sklearn's rule)."""

Numbers = Sequence[float] | Sequence[int] | np.ndarray[Any, Any]


def _arrays(labels: Numbers, values: Numbers) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    y = np.asarray(labels, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or y.shape != v.shape:
        raise ValueError(f"need two 1-d sequences of one length, got {y.shape} and {v.shape}")
    if y.size == 0:
        raise ValueError("no labelled rows")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, v


def accuracy(labels: Numbers, predicted: Numbers) -> float:
    """Share of rows whose served label equals the true label, in [0, 1]."""
    y, p = _arrays(labels, predicted)
    return float(np.mean(y == p))


def log_loss_term(label: int, score: float) -> float:
    """One row's log loss (natural log), with the clipping of :func:`log_loss`."""
    p = score if label == 1 else 1.0 - score
    return -math.log(min(max(p, LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS))


def log_loss(labels: Numbers, scores: Numbers) -> float:
    """Mean negative log-likelihood (natural log) of the true labels under ``scores``."""
    y, s = _arrays(labels, scores)
    p = np.where(y == 1.0, s, 1.0 - s)
    return float(-np.mean(np.log(np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS))))


def brier(labels: Numbers, scores: Numbers) -> float:
    """Mean squared difference between ``scores`` and the true labels, in [0, 1]."""
    y, s = _arrays(labels, scores)
    return float(np.mean((s - y) ** 2))


def positive_rate(labels: Numbers) -> float:
    """Share of true labels that are 1."""
    y, _ = _arrays(labels, labels)
    return float(np.mean(y))


def auc(labels: Numbers, scores: Numbers, min_per_class: int = AUC_MIN_PER_CLASS) -> float | None:
    """ROC AUC (ties count half), or None with fewer than ``min_per_class`` labels of a class.

    Mann-Whitney form: (sum of the positives' average ranks - n1 (n1 + 1) / 2) / (n1 n0).
    """
    y, s = _arrays(labels, scores)
    positives = int(np.count_nonzero(y == 1.0))
    negatives = int(y.size) - positives
    if positives < max(min_per_class, 1) or negatives < max(min_per_class, 1):
        return None
    ranks = average_ranks(s)
    rank_sum = float(ranks[y == 1.0].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties given their average rank (``rankdata``'s "average").

    Written here because importing ``scipy.stats`` for its ``rankdata`` cost every worker
    1.1 s at start; tests/unit/lifecycle/test_evaluation.py checks it against scipy's.
    """
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Where a run of equal values starts, and the end of the last one.
    bounds = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    mean_rank = (bounds[:-1] + 1 + bounds[1:]) / 2.0  # of positions start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, np.diff(bounds))
    return ranks


@dataclass(frozen=True, slots=True)
class LabelledSums:
    """Sums over labelled rows: count, true positives count, rows right, loss sums."""

    n: int  # rows
    positives: int  # rows whose true label is 1
    correct: int  # rows whose served label equals the true label
    log_loss_sum: float  # sum of log_loss_term over the rows
    brier_sum: float  # sum of (score - label)^2 over the rows


@dataclass(frozen=True, slots=True)
class VariantMetrics:
    """Online metrics of one (version, variant) over its evaluation window; ``n`` in rows."""

    version: str
    variant: str  # champion | challenger | shadow
    n: int
    accuracy: float
    log_loss: float
    brier: float
    auc: float | None  # None with too few labels of either class
    positive_rate: float

    @classmethod
    def from_sums(
        cls, version: str, variant: str, sums: LabelledSums, auc: float | None
    ) -> VariantMetrics:
        """Means from the sums (``sums.n`` must be positive) and an AUC computed apart."""
        if sums.n <= 0:
            raise ValueError("no labelled rows")
        n = sums.n
        return cls(
            version,
            variant,
            n,
            sums.correct / n,
            sums.log_loss_sum / n,
            sums.brier_sum / n,
            auc,
            sums.positives / n,
        )

    @classmethod
    def of_rows(
        cls,
        version: str,
        variant: str,
        labels: Numbers,
        scores: Numbers,
        predicted: Numbers,
        min_per_class: int = AUC_MIN_PER_CLASS,
    ) -> VariantMetrics:
        """Metrics computed directly from the rows (the reference for the SQL sums)."""
        return cls(
            version,
            variant,
            len(labels),
            accuracy(labels, predicted),
            log_loss(labels, scores),
            brier(labels, scores),
            auc(labels, scores, min_per_class),
            positive_rate(labels),
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/models/{model}/evaluation``'s variants."""
        return {
            "version": self.version,
            "variant": self.variant,
            "n": self.n,
            "accuracy": self.accuracy,
            "log_loss": self.log_loss,
            "brier": self.brier,
            "auc": self.auc,
            "positive_rate": self.positive_rate,
        }


def publish(model: str, results: Sequence[VariantMetrics]) -> None:
    """Set the ``phoenix_model_*`` gauges of ``model`` to ``results`` (an AUC of None
    removes that series rather than showing a stale or made-up number)."""
    for r in results:
        labels = (model, r.version, r.variant)
        metrics.MODEL_LABELLED.labels(*labels).set(r.n)
        metrics.MODEL_ACCURACY.labels(*labels).set(r.accuracy)
        metrics.MODEL_LOG_LOSS.labels(*labels).set(r.log_loss)
        metrics.MODEL_BRIER.labels(*labels).set(r.brier)
        metrics.MODEL_POSITIVE_RATE.labels(*labels).set(r.positive_rate)
        if r.auc is None:
            metrics.MODEL_AUC.remove(*labels)
        else:
            metrics.MODEL_AUC.labels(*labels).set(r.auc)
