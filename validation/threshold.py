"""Choosing the decision threshold on the validation split, and the operating-point table.

The product's rule: the threshold that maximises F1 on the validation split, ties broken
toward the *higher* threshold (fewer positive calls for the same F1). Candidates are the
distinct validation probabilities (decision: positive when p >= threshold), which covers every
achievable operating point. Test labels are never read here: the threshold is locked before
the test split is scored.

Alternatives reported beside it: Youden's J (sensitivity + specificity - 1, ties toward the
higher threshold) and the highest threshold whose validation sensitivity reaches a target.
"""
from __future__ import annotations

import numpy as np

from .metrics import cumulative_counts, ranking

MAX_F1 = "max_f1"
YOUDEN = "youden"
RULE_TEXT = {
    MAX_F1: "maximum F1 on the validation split; ties broken toward the higher threshold",
    YOUDEN: "maximum Youden's J (sensitivity + specificity - 1) on the validation split; ties toward the higher threshold",
}


def _candidates(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    r = ranking(probs, labels)
    tps, fps = cumulative_counts(r)
    return r.values, tps, fps, float(tps[-1]), float(fps[-1])


def _first_max(scores: np.ndarray) -> int:
    """Index of the first maximum, treating values within 1e-12 as equal: candidates are in
    descending threshold order, so this is the tie-break toward the higher threshold (and
    2/3 computed two ways must tie even when the floats differ in the last bit)."""
    return int(np.flatnonzero(scores >= np.nanmax(scores) - 1e-12)[0])


def max_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The validation threshold of maximum F1 (ties -> higher threshold)."""
    values, tps, fps, positives, _ = _candidates(probs, labels)
    if positives == 0:
        raise ValueError("the validation split has no positive image: F1 is undefined")
    return float(values[_first_max(2 * tps / (tps + fps + positives))])


def youden_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    values, tps, fps, positives, negatives = _candidates(probs, labels)
    if positives == 0 or negatives == 0:
        raise ValueError("Youden's J needs both classes in the validation split")
    return float(values[_first_max(tps / positives - fps / negatives)])


def sensitivity_threshold(probs: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold whose validation sensitivity is at least ``target``."""
    values, tps, _, positives, _ = _candidates(probs, labels)
    if positives == 0:
        raise ValueError("the validation split has no positive image: sensitivity is undefined")
    return float(values[int(np.argmax(tps / positives >= target - 1e-12))])


def sensitivity_rule(target: float) -> str:
    return f"sensitivity>={target:g}"


def operating_thresholds(probs: np.ndarray, labels: np.ndarray, target_sensitivity: float) -> dict[str, float]:
    """Every rule's threshold, chosen on validation data only."""
    return {MAX_F1: max_f1_threshold(probs, labels), YOUDEN: youden_threshold(probs, labels),
            sensitivity_rule(target_sensitivity): sensitivity_threshold(probs, labels, target_sensitivity)}
