"""Choosing the decision threshold (on the validation split, or on external development sets):
the policies, and the operating-point table.

Decision: positive when probability >= threshold. Candidates are the distinct validation
probabilities, which covers every achievable operating point. Test (and external) labels are
never read here: the threshold is locked before anything else is scored.

Policies (:class:`ThresholdPolicy`; the product's default is maximum F1):

* ``max_f1`` - maximum validation F1, ties toward the *higher* threshold (fewer positive calls
  for the same F1);
* ``youden`` - maximum Youden's J (sensitivity + specificity - 1), ties toward the higher threshold;
* ``target_sensitivity`` - the highest threshold whose validation sensitivity reaches ``target``;
* ``target_specificity`` - the lowest threshold whose validation specificity reaches ``target``;
* ``max_accuracy`` - the highest accuracy among the thresholds whose sensitivity reaches ``target``
  (a triage device must not miss), ties toward the higher threshold;
* ``f1_plateau`` - the centre (in logit space) of the run of thresholds whose validation F1 is
  within ``tolerance`` of the maximum. A validation split drawn from the training source is often
  nearly separable: F1 is flat over a wide range and "maximum F1" lands anywhere on it, usually
  at an edge; the centre of the plateau stays as far as the validation data allow from both
  classes, which is what lets it survive a shift of the score distribution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxr_device.runtime.calibration import logit

from .metrics import cumulative_counts, ranking

MAX_F1, YOUDEN, MAX_ACCURACY = "max_f1", "youden", "max_accuracy"
TARGET_SENSITIVITY, TARGET_SPECIFICITY, F1_PLATEAU = "target_sensitivity", "target_specificity", "f1_plateau"
POLICIES = (MAX_F1, YOUDEN, TARGET_SENSITIVITY, TARGET_SPECIFICITY, F1_PLATEAU, MAX_ACCURACY)
RULE_TEXT = {
    MAX_F1: "maximum F1 on {data}; ties broken toward the higher threshold",
    YOUDEN: "maximum Youden's J (sensitivity + specificity - 1) on {data}; ties toward the higher threshold",
    TARGET_SENSITIVITY: "the highest threshold whose sensitivity on {data} reaches {target:g}",
    TARGET_SPECIFICITY: "the lowest threshold whose specificity on {data} reaches {target:g}",
    F1_PLATEAU: ("the centre, in logit space, of the thresholds whose F1 on {data} is within {tolerance:g} of the "
                 "maximum (the near-optimal plateau)"),
    MAX_ACCURACY: ("the highest accuracy on {data} among the thresholds whose sensitivity there reaches {target:g} "
                   "(a triage device must not miss); ties toward the higher threshold"),
}
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the locked threshold is chosen; recorded in device.json and described in the documents."""

    rule: str = MAX_F1
    target: float | None = None  # for target_sensitivity / target_specificity
    tolerance: float = DEFAULT_TOLERANCE  # for f1_plateau

    def __post_init__(self) -> None:
        if self.rule not in POLICIES:
            raise ValueError(f"threshold policy must be one of {', '.join(POLICIES)}, got {self.rule!r}")
        if self.rule in (TARGET_SENSITIVITY, TARGET_SPECIFICITY, MAX_ACCURACY) and not (
                self.target is not None and 0.0 < self.target <= 1.0):
            raise ValueError(f"threshold policy {self.rule} needs a target in (0, 1], got {self.target!r}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"f1_plateau tolerance must be in [0, 1), got {self.tolerance!r}")

    @property
    def name(self) -> str:
        """``max_f1``, ``target_sensitivity>=0.9``, ``f1_plateau(0.01)``: the rule as recorded."""
        if self.rule in (TARGET_SENSITIVITY, TARGET_SPECIFICITY):
            return f"{self.rule}>={self.target:g}"
        if self.rule == MAX_ACCURACY:
            return f"{self.rule}(sensitivity>={self.target:g})"
        return f"{self.rule}({self.tolerance:g})" if self.rule == F1_PLATEAU else self.rule

    def description(self, data: str = "the validation split") -> str:
        """The rule in words, naming the ``data`` it is chosen on."""
        return RULE_TEXT[self.rule].format(target=self.target or 0.0, tolerance=self.tolerance, data=data)

    def choose(self, probs: np.ndarray, labels: np.ndarray) -> float:
        """The threshold this policy locks on the given probabilities and labels."""
        chooser = {MAX_F1: max_f1_threshold, YOUDEN: youden_threshold, F1_PLATEAU: self._plateau,
                   TARGET_SENSITIVITY: lambda p, y: sensitivity_threshold(p, y, self.target),
                   TARGET_SPECIFICITY: lambda p, y: specificity_threshold(p, y, self.target),
                   MAX_ACCURACY: lambda p, y: accuracy_threshold(p, y, self.target)}[self.rule]
        return chooser(probs, labels)

    def _plateau(self, probs: np.ndarray, labels: np.ndarray) -> float:
        return f1_plateau_threshold(probs, labels, self.tolerance)


def _candidates(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    r = ranking(probs, labels)
    tps, fps = cumulative_counts(r)
    return r.values, tps, fps, float(tps[-1]), float(fps[-1])


def _first_max(scores: np.ndarray) -> int:
    """Index of the first maximum, treating values within 1e-12 as equal: candidates are in
    descending threshold order, so this is the tie-break toward the higher threshold (and
    2/3 computed two ways must tie even when the floats differ in the last bit)."""
    return int(np.flatnonzero(scores >= np.nanmax(scores) - 1e-12)[0])


def _f1(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, tps, fps, positives, _ = _candidates(probs, labels)
    if positives == 0:
        raise ValueError("the validation split has no positive image: F1 is undefined")
    return values, 2 * tps / (tps + fps + positives)


def max_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The validation threshold of maximum F1 (ties -> higher threshold)."""
    values, f1 = _f1(probs, labels)
    return float(values[_first_max(f1)])


def f1_plateau_threshold(probs: np.ndarray, labels: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Centre (logit space) of the near-optimal plateau: the thresholds whose validation
    decisions give an F1 within ``tolerance`` of the maximum, in the contiguous run around the
    maximum-F1 candidate. Candidate ``k`` (descending) makes the same decisions for every
    threshold in ``(values[k + 1], values[k]]``, so the plateau reaches down to the next score
    below its lowest candidate: on a separable split it is the whole gap between the classes."""
    values, f1 = _f1(probs, labels)
    best = _first_max(f1)
    near = f1 >= f1[best] - tolerance - 1e-12
    hi = best
    while hi > 0 and near[hi - 1]:
        hi -= 1
    lo = best
    while lo + 1 < len(values) and near[lo + 1]:
        lo += 1
    bottom = values[lo + 1] if lo + 1 < len(values) else values[lo]
    if bottom == values[hi]:
        return float(values[hi])
    centre = (logit(values[hi]) + logit(bottom)) / 2
    return float(1.0 / (1.0 + math.exp(-centre)))


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


def specificity_threshold(probs: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest threshold whose validation specificity is at least ``target``: the candidate
    just above the last negative it must leave negative (specificity rises with the threshold)."""
    values, _, fps, _, negatives = _candidates(probs, labels)
    if negatives == 0:
        raise ValueError("the validation split has no negative image: specificity is undefined")
    specificity = 1.0 - fps / negatives  # at each candidate, descending thresholds: non-increasing
    reaching = np.flatnonzero(specificity >= target - 1e-12)
    return float(values[reaching[-1]]) if len(reaching) else float(np.nextafter(values[0], np.inf))


def accuracy_threshold(probs: np.ndarray, labels: np.ndarray, min_sensitivity: float) -> float:
    """The threshold of highest accuracy among those whose sensitivity is at least
    ``min_sensitivity`` (ties toward the higher threshold)."""
    values, tps, fps, positives, negatives = _candidates(probs, labels)
    if positives == 0:
        raise ValueError("the data have no positive image: sensitivity is undefined")
    accuracy = (tps + negatives - fps) / (positives + negatives)
    allowed = tps / positives >= min_sensitivity - 1e-12
    return float(values[_first_max(np.where(allowed, accuracy, -np.inf))])


def operating_thresholds(probs: np.ndarray, labels: np.ndarray, target_sensitivity: float,
                         locked: ThresholdPolicy | None = None) -> dict[str, tuple[ThresholdPolicy, float]]:
    """Every policy's threshold for the operating-point table (name -> (policy, threshold)),
    chosen on validation data only; the locked policy first."""
    policies = [locked or ThresholdPolicy(), ThresholdPolicy(MAX_F1), ThresholdPolicy(YOUDEN),
                ThresholdPolicy(TARGET_SENSITIVITY, target_sensitivity), ThresholdPolicy(F1_PLATEAU)]
    out: dict[str, tuple[ThresholdPolicy, float]] = {}
    for policy in policies:
        if policy.name not in out:
            out[policy.name] = (policy, policy.choose(probs, labels))
    return out
