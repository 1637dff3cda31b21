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
* PPV and NPV at an intended-use prevalence: Bayes' theorem from sensitivity and specificity,
  bounded by their exact limits (:func:`predictive_values_interval`).
* Newcombe (2006), *Confidence intervals for an effect size measure based on the Mann-Whitney
  statistic. Part 2: asymptotic methods and evaluation*, Stat Med 25:559-573, **method 5**: a
  Wilson-score-type interval for the AUROC. The Hanley-McNeil variance with both sample sizes
  replaced by N* = (m + n) / 2,
  ``V(t) = t (1 - t) [1 + (N* - 1) ((1 - t) / (2 - t) + t / (1 + t))] / (m n)``,
  is taken at the bound itself, and the bounds are the solutions of ``(A - t)^2 = z^2 V(t)``
  either side of the estimate ``A``. Unlike DeLong's, its width stays positive at an AUROC of 0
  or 1, so it replaces DeLong's where DeLong's interval is degenerate (:func:`auroc_interval`).

Every interval here lies inside [0, 1]; an interval of zero width, or one that cannot be
computed, never supports a claim (:func:`lower_bound_for_acceptance`).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

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


DELONG = "DeLong"
NEWCOMBE_AUC = "Newcombe (2006) score interval (DeLong degenerate)"
NEWCOMBE_AUC_REFERENCE = ("Newcombe (2006) method 5: Wilson-score-type interval with the Hanley-McNeil variance "
                          "(N* = (m + n) / 2) at the bounds, solved for the bounds")


def delong_degenerate(result: dict, n_positive: int, n_negative: int) -> str | None:
    """Why a DeLong result (:func:`delong`) cannot support a claim, or None when it can: fewer than
    2 cases of a class, an AUROC of 0 or 1, zero variance, or an interval of zero width."""
    if n_positive < 2 or n_negative < 2:
        return f"fewer than 2 cases of a class ({n_positive} positive, {n_negative} negative)"
    value, se, (lo, hi) = result["value"], result["se"], result["ci95"]
    if value in (0.0, 1.0):
        return f"AUROC of {value:g} (perfect separation): DeLong's variance is 0"
    if not se > 0:
        return "zero DeLong variance"
    if not hi - lo > 0:
        return "zero-width interval"
    return None


def _w(t: float, m: int, n: int) -> float:
    """The bracket of the variance: ``1 + (N* - 1) ((1 - t) / (2 - t) + t / (1 + t))``."""
    n_star = (m + n) / 2.0
    return 1 + (n_star - 1) * ((1 - t) / (2 - t) + t / (1 + t))


def _hanley_mcneil_n_star(t: float, m: int, n: int) -> float:
    """Newcombe's (2006) variance of the AUROC at ``t``: Hanley-McNeil's, with ``N* = (m + n) / 2``
    in place of both sample sizes."""
    return t * (1 - t) * _w(t, m, n) / (m * n)


def newcombe_auc(auc: float, n_positive: int, n_negative: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's (2006) method 5 interval for an AUROC ``auc`` from ``n_positive`` and
    ``n_negative`` cases: the bounds solve ``(auc - t)^2 = z^2 V(t)`` (below and above ``auc``);
    (nan, nan) without a case of each class. The variance is symmetric in t and 1 - t, so the
    upper bound at ``auc`` is one minus the lower bound at ``1 - auc``."""
    if n_positive < 1 or n_negative < 1 or not 0.0 <= auc <= 1.0:
        return float("nan"), float("nan")
    z2 = float(stats.norm.ppf(0.5 + level / 2)) ** 2
    return (_newcombe_lower(auc, n_positive, n_negative, z2),
            1.0 - _newcombe_lower(1.0 - auc, n_positive, n_negative, z2))


def _newcombe_lower(auc: float, m: int, n: int, z2: float) -> float:
    """The smallest t in [0, auc] with (auc - t)^2 <= z^2 V(t)."""
    if auc <= 0.0:
        return 0.0
    if auc >= 1.0:  # (1 - t)^2 = z^2 V(t) has the trivial root t = 1: divide both sides by (1 - t)
        def reduced(t: float) -> float:  # positive at 0, negative at 1
            return (1 - t) - z2 * t * _w(t, m, n) / (m * n)

        return float(optimize.brentq(reduced, 0.0, 1.0, xtol=1e-14))

    def excess(t: float) -> float:
        return (auc - t) ** 2 - z2 * _hanley_mcneil_n_star(t, m, n)

    grid = np.linspace(0.0, auc, 513)
    values = np.array([excess(t) for t in grid])  # positive at 0, negative at auc
    first = int(np.flatnonzero(values <= 0)[0])
    if values[first] == 0:
        return float(grid[first])
    return float(optimize.brentq(excess, grid[first - 1], grid[first], xtol=1e-14))


def auroc_interval(probs: np.ndarray, labels: np.ndarray, level: float = 0.95) -> dict:
    """The AUROC interval a claim is judged on: DeLong's, unless it is degenerate
    (:func:`delong_degenerate`), then Newcombe's (2006) score interval.

    ``{"ci95": [lo, hi], "method", "delong_degenerate": reason or None}``; NaNs (and method None)
    when a class is absent."""
    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    result = delong(probs, labels, level)
    reason = delong_degenerate(result, m, n) if m and n else "a class is absent"
    if reason is None:
        return {"ci95": list(result["ci95"]), "method": DELONG, "delong_degenerate": None}
    if not (m and n):
        return {"ci95": [float("nan"), float("nan")], "method": None, "delong_degenerate": reason}
    return {"ci95": list(newcombe_auc(result["value"], m, n, level)), "method": NEWCOMBE_AUC,
            "delong_degenerate": reason}


def lower_bound_for_acceptance(interval: list | tuple) -> tuple[float | None, str | None]:
    """(lower bound, None) when ``interval`` can support a claim; (lower bound or None, why not)
    when it cannot - not computed (no cases), or of zero width."""
    lo, hi = interval
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return None, "no interval could be computed (no cases): not a pass"
    if not hi - lo > 0:
        return lo, f"the interval [{lo:.4g}, {hi:.4g}] has zero width: not a pass"
    return lo, None


def proportion(successes: int, trials: int) -> dict:
    """A proportion with both closed-form intervals: ``{"value", "k", "n", "clopper_pearson", "wilson"}``."""
    return {"value": successes / trials if trials else float("nan"), "k": int(successes), "n": int(trials),
            "clopper_pearson": list(clopper_pearson(successes, trials)), "wilson": list(wilson(successes, trials))}


PROPORTIONS = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "ppv": ("tp", "fp"), "npv": ("tn", "fn")}


def exact_intervals(counts: dict, probs: np.ndarray, labels: np.ndarray) -> dict:
    """The closed-form intervals of one split: ``{metric: {"k", "n", "clopper_pearson"}}`` for
    sensitivity, specificity, PPV, NPV and accuracy from confusion ``counts``, and
    ``{"auroc": {"delong": {"ci95", "variance", "se"}, "interval": auroc_interval(...)}}``."""
    c = {key: int(counts[key]) for key in ("tp", "fp", "tn", "fn")}
    pairs = {name: (c[hit], c[hit] + c[miss]) for name, (hit, miss) in PROPORTIONS.items()}
    pairs["accuracy"] = (c["tp"] + c["tn"], sum(c.values()))
    out: dict = {name: {"k": k, "n": n, "clopper_pearson": list(clopper_pearson(k, n))}
                 for name, (k, n) in pairs.items()}
    d = delong(probs, labels)
    out["auroc"] = {"delong": {"ci95": d["ci95"], "variance": d["se"] ** 2, "se": d["se"], "method": DELONG},
                    "interval": auroc_interval(probs, labels)}
    return out


def bayes_predictive_values(sensitivity: float, specificity: float, prevalence: float) -> dict[str, float]:
    """PPV and NPV at ``prevalence`` from sensitivity and specificity (Bayes' theorem)."""
    tp, fn = sensitivity * prevalence, (1 - sensitivity) * prevalence
    tn, fp = specificity * (1 - prevalence), (1 - specificity) * (1 - prevalence)
    return {"ppv": tp / (tp + fp) if tp + fp > 0 else float("nan"),
            "npv": tn / (tn + fn) if tn + fn > 0 else float("nan")}


def predictive_values_interval(tp: int, positives: int, tn: int, negatives: int, prevalence: float,
                               level: float = 0.95) -> dict:
    """PPV and NPV at ``prevalence`` (Bayes, from sensitivity ``tp/positives`` and specificity
    ``tn/negatives``) with a conservative interval from the exact limits of both.

    Both predictive values rise with sensitivity and with specificity, so the lower bound pairs
    the two lower limits and the upper bound the two upper ones. Sensitivity and specificity are
    estimated on different cases (independent), so when each one-sided Clopper-Pearson limit
    holds with probability ``q = sqrt(1 - (1 - level) / 2)`` (98.74% for 95%) a bound holds with
    probability at least ``q^2 = 97.5%`` and the interval covers with probability at least
    ``level``. Returns ``{"prevalence", "ppv", "npv", "ppv_ci95", "npv_ci95", "method",
    "component_level"}``; every value lies in [0, 1] (NaN when undefined)."""
    q = math.sqrt(1.0 - (1.0 - level) / 2)
    component_level = 2 * q - 1  # two-sided level whose one-sided limits each hold with probability q
    sens = successes_ratio(tp, positives)
    spec = successes_ratio(tn, negatives)
    s_lo, s_hi = clopper_pearson(tp, positives, component_level)
    c_lo, c_hi = clopper_pearson(tn, negatives, component_level)
    point = bayes_predictive_values(sens, spec, prevalence)
    lo = bayes_predictive_values(s_lo, c_lo, prevalence)
    hi = bayes_predictive_values(s_hi, c_hi, prevalence)
    return {"prevalence": prevalence, "ppv": point["ppv"], "npv": point["npv"],
            "ppv_ci95": [lo["ppv"], hi["ppv"]], "npv_ci95": [lo["npv"], hi["npv"]],
            "method": PREDICTIVE_VALUES_METHOD.format(level=100 * component_level, q=100 * q),
            "component_level": component_level}


PREDICTIVE_VALUES_METHOD = ("Bayes' theorem at the intended prevalence from sensitivity and specificity; bounds from "
                            "their Clopper-Pearson limits at {level:.2f}% two-sided (each one-sided limit {q:.2f}%), "
                            "lower with lower and upper with upper, so each bound holds with probability >= 97.5% "
                            "and the interval covers with probability >= 95% (conservative)")


def successes_ratio(successes: int, trials: int) -> float:
    """``successes / trials``; NaN when ``trials`` is 0."""
    return successes / trials if trials > 0 else float("nan")
