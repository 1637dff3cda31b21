"""Closed-form 95% intervals: exact binomial (Clopper-Pearson), Wilson, and DeLong for AUROC.

They complement the patient bootstrap (:mod:`validation.bootstrap`): the bootstrap respects the
clustering of images within patients but collapses to [1, 1] when every positive is detected;
the exact interval never does, and is what the validation plan sizes for.

* Clopper-Pearson (1934): the exact interval from beta quantiles; never narrower than nominal.
* Wilson (1927) score interval.
* DeLong, DeLong & Clarke-Pearson (1988) variance of the empirical AUROC from its structural
  components (the fast algorithm of Sun & Xu, 2014: mid-ranks instead of n+ x n- comparisons),
  with a normal interval clipped to [0, 1]. The components are public
  (:func:`delong_components`): the paired comparison of two devices uses them too.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion; (nan, nan) when ``trials`` is 0."""
    if trials <= 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    lo = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lo, hi


def wilson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when ``trials`` is 0."""
    if trials <= 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _mid_ranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_components(probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The empirical AUROC and its structural components (DeLong et al., 1988): ``v10`` of each
    positive (the share of negatives it outranks, ties counted one half) and ``v01`` of each
    negative (the share of positives that outrank it). The AUROC is the mean of either; their
    variances give the DeLong variance, and their covariances between two scores of the same
    cases the paired one (:mod:`validation.paired`). Requires both classes."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels).astype(bool)
    positives, negatives = probs[labels], probs[~labels]
    m, n = len(positives), len(negatives)
    tx, ty, tz = _mid_ranks(positives), _mid_ranks(negatives), _mid_ranks(np.r_[positives, negatives])
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (tz[:m] - tx) / n  # structural components of each positive
    v01 = 1.0 - (tz[m:] - ty) / m  # ... and of each negative
    return auc, v10, v01


def delong(probs: np.ndarray, labels: np.ndarray, level: float = 0.95) -> dict:
    """AUROC with its DeLong standard error and normal interval.

    Returns ``{"value", "se", "ci95": [lo, hi]}``; NaNs when a class is absent. The AUROC counts a
    tie between a positive and a negative as one half (as the ROC trapezoids do)."""
    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    if m == 0 or n == 0:
        return {"value": float("nan"), "se": float("nan"), "ci95": [float("nan"), float("nan")]}
    auc, v10, v01 = delong_components(probs, labels)
    variance = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    se = float(math.sqrt(max(variance, 0.0)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    return {"value": auc, "se": se, "ci95": [max(0.0, auc - z * se), min(1.0, auc + z * se)]}


def proportion(successes: int, trials: int) -> dict:
    """A proportion with both closed-form intervals: ``{"value", "k", "n", "clopper_pearson", "wilson"}``."""
    return {"value": successes / trials if trials else float("nan"), "k": int(successes), "n": int(trials),
            "clopper_pearson": list(clopper_pearson(successes, trials)), "wilson": list(wilson(successes, trials))}


def bayes_predictive_values(sensitivity: float, specificity: float, prevalence: float) -> dict[str, float]:
    """PPV and NPV at ``prevalence`` from sensitivity and specificity (Bayes' theorem)."""
    tp, fn = sensitivity * prevalence, (1 - sensitivity) * prevalence
    tn, fp = specificity * (1 - prevalence), (1 - specificity) * (1 - prevalence)
    return {"ppv": tp / (tp + fp) if tp + fp > 0 else float("nan"),
            "npv": tn / (tn + fn) if tn + fn > 0 else float("nan")}
