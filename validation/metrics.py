"""Performance metrics with optional per-image weights.

Weights make the patient-level bootstrap cheap: a bootstrap replicate is the same images with
integer weights (how often each image's patient was drawn), so the scores are sorted once and
every replicate costs a few vectorised passes. Definitions:

* decision: positive when probability >= threshold;
* AUROC: area under the ROC curve with ties handled as in scikit-learn (trapezoids between
  distinct scores); average precision: scikit-learn's step-wise definition;
* sensitivity (recall) TP/(TP+FN), specificity TN/(TN+FP), PPV (precision) TP/(TP+FP),
  NPV TN/(TN+FN), F1 2TP/(2TP+FP+FN), accuracy, Brier score mean((p - y)^2);
* a ratio with a zero denominator is NaN (never a silent 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
ALL_METRICS = ("auroc", "average_precision", *THRESHOLD_METRICS, "brier")


@dataclass(frozen=True)
class Ranking:
    """Scores sorted once (descending) with their tie groups, reused across weightings."""

    order: np.ndarray  # indices sorting probabilities descending
    starts: np.ndarray  # first position of each group of equal scores in that order
    values: np.ndarray  # the distinct scores, descending
    labels: np.ndarray  # labels in sorted order (float)


def ranking(probs: np.ndarray, labels: np.ndarray) -> Ranking:
    """Sort ``probs`` descending (stable) and find the groups of tied scores."""
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="stable")
    sorted_probs = probs[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_probs)) + 1]
    return Ranking(order, starts, sorted_probs[starts], np.asarray(labels, dtype=float)[order])


def cumulative_counts(r: Ranking, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """True- and false-positive counts when predicting positive at each distinct score and above."""
    w = np.ones(len(r.order)) if weights is None else np.asarray(weights, dtype=float)[r.order]
    tps = np.cumsum(np.add.reduceat(w * r.labels, r.starts))
    fps = np.cumsum(np.add.reduceat(w * (1.0 - r.labels), r.starts))
    return tps, fps


def auroc(r: Ranking, weights: np.ndarray | None = None) -> float:
    tps, fps = cumulative_counts(r, weights)
    if tps[-1] <= 0 or fps[-1] <= 0:
        return float("nan")
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def average_precision(r: Ranking, weights: np.ndarray | None = None) -> float:
    tps, fps = cumulative_counts(r, weights)
    if tps[-1] <= 0:
        return float("nan")
    recall = np.r_[0.0, tps / tps[-1]]
    precision = tps / np.maximum(tps + fps, 1e-300)
    return float(np.sum(np.diff(recall) * precision))


def roc_points(r: Ranking, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) to (1, 1)."""
    tps, fps = cumulative_counts(r, weights)
    return np.r_[0.0, fps / max(fps[-1], 1e-300)], np.r_[0.0, tps / max(tps[-1], 1e-300)]


def confusion(probs: np.ndarray, labels: np.ndarray, threshold: float,
              weights: np.ndarray | None = None) -> dict[str, float]:
    """TP, FP, TN, FN (weighted sums) at ``threshold`` (positive when p >= threshold)."""
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=float)
    predicted = np.asarray(probs) >= threshold
    y = np.asarray(labels) == 1
    return {"tp": float(w[predicted & y].sum()), "fp": float(w[predicted & ~y].sum()),
            "tn": float(w[~predicted & ~y].sum()), "fn": float(w[~predicted & y].sum())}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def from_confusion(c: dict[str, float]) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, F1 and accuracy from confusion counts."""
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
    }


def all_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float, weights: np.ndarray | None = None,
                r: Ranking | None = None) -> dict[str, float]:
    """Every metric of :data:`ALL_METRICS` (weighted when ``weights`` is given)."""
    r = r or ranking(probs, labels)
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=float)
    brier = _ratio(float(np.sum(w * (np.asarray(probs) - np.asarray(labels)) ** 2)), float(w.sum()))
    return {"auroc": auroc(r, weights), "average_precision": average_precision(r, weights),
            **from_confusion(confusion(probs, labels, threshold, weights)), "brier": brier}


def finite(value):
    """NaN/inf -> None recursively, so a metrics file is strict JSON; numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value
