"""Calibration: how far probabilities are from observed frequencies, and how to fix it on
validation data only.

* :func:`fit_calibration` fits, on the validation split's logits and labels, either
  temperature scaling (``p = sigmoid(z / T)``, Guo et al. 2017) or Platt scaling
  (``p = sigmoid(a z + b)``, Platt 1999). Both use Platt's smoothed targets
  ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` instead of 1 and 0, so a nearly separable
  validation split cannot drive the fit to infinitely confident probabilities, and the
  temperature has a floor. Platt's offset ``b`` also undoes the shift a class-weighted loss
  puts into the logits (``log pos_weight``). Both are monotone: they never change the ranking,
  so AUROC and any rank-based operating point are unchanged; they change the probabilities and
  therefore where a probability threshold lands and what it means.
* :func:`expected_calibration_error`: ECE over equal-width bins (the gap between mean predicted
  probability and observed frequency, weighted by bin size), and :func:`reliability` for the
  diagram; :func:`negative_log_likelihood` (binary cross-entropy).
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from cxr_device.runtime.calibration import METHODS, Calibration, logit, sigmoid

__all__ = ["METHODS", "Calibration", "expected_calibration_error", "fit_calibration", "logit",
           "negative_log_likelihood", "reliability", "sigmoid", "summary"]

MIN_TEMPERATURE = 0.05
MAX_SLOPE = 1.0 / MIN_TEMPERATURE
N_BINS = 10


def _smoothed_targets(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    return np.where(labels, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))


def _nll_of_logits(z: np.ndarray, targets: np.ndarray) -> float:
    # -[t log s(z) + (1 - t) log(1 - s(z))] = softplus(z) - t z, computed stably
    return float(np.mean(np.logaddexp(0.0, z) - targets * z))


def fit_calibration(logits: np.ndarray, labels: np.ndarray, method: str = "platt") -> Calibration:
    """Fit ``method`` on validation logits and labels (both classes needed)."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    logits, labels = np.asarray(logits, dtype=float), np.asarray(labels).astype(bool)
    if method == "none":
        return Calibration()
    if labels.all() or not labels.any():
        raise ValueError("calibration needs both classes in the validation split")
    targets = _smoothed_targets(labels)
    if method == "temperature":
        result = optimize.minimize_scalar(lambda s: _nll_of_logits(s * logits, targets),
                                          bounds=(1.0 / 100.0, MAX_SLOPE), method="bounded",
                                          options={"xatol": 1e-9})
        return Calibration("temperature", float(result.x), 0.0)
    result = optimize.minimize(lambda p: _nll_of_logits(p[0] * logits + p[1], targets), x0=np.array([1.0, 0.0]),
                               method="L-BFGS-B", bounds=[(1e-3, MAX_SLOPE), (-50.0, 50.0)])
    return Calibration("platt", float(result.x[0]), float(result.x[1]))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities (clipped at 1e-12)."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(p) else float("nan")


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """Equal-width bins on [0, 1] that hold images: ``{"bin": [lo, hi], "n", "mean_predicted",
    "observed"}`` (mean predicted probability and observed frequency of pneumonia)."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = index == b
        if inside.any():
            rows.append({"bin": [float(edges[b]), float(edges[b + 1])], "n": int(inside.sum()),
                         "mean_predicted": float(probs[inside].mean()), "observed": float(labels[inside].mean())})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE: sum over bins of (bin share) x |mean probability - observed frequency|."""
    total = len(probs)
    if total == 0:
        return float("nan")
    return float(sum(r["n"] / total * abs(r["mean_predicted"] - r["observed"])
                     for r in reliability(probs, labels, n_bins)))


def summary(logits: np.ndarray, labels: np.ndarray, calibration: Calibration) -> dict:
    """ECE and NLL before and after ``calibration``, with both reliability tables."""
    raw, calibrated = sigmoid(np.asarray(logits, float)), calibration.probabilities(logits)
    return {
        "before": {"ece": expected_calibration_error(raw, labels), "nll": negative_log_likelihood(raw, labels),
                   "reliability": reliability(raw, labels)},
        "after": {"ece": expected_calibration_error(calibrated, labels),
                  "nll": negative_log_likelihood(calibrated, labels), "reliability": reliability(calibrated, labels)},
        "n_bins": N_BINS,
    }

