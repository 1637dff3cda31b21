"""Two independent samples compared: the internal test split against an external set.

Every difference is *second - first* (external - internal in the shift report).

* Difference of independent proportions: Newcombe (1998), *Interval estimation for the
  difference between independent proportions: comparison of eleven methods*, Stat Med
  17:873-890, **method 10** - the hybrid score ("square-and-add") interval from the Wilson
  limits of each proportion, no continuity correction - with Fisher's exact test
  (``scipy.stats.fisher_exact``, two-sided) for the p-value. The interval and the test are
  different constructions and can disagree near p = 0.05; the verdict of a comparison is the
  test's.
* Difference of two AUROCs on independent cases: DeLong's variance of each (computed on its own
  sample), added, with a two-sided z test and a normal interval clipped to [-1, 1].
"""
from __future__ import annotations

import math

from scipy import stats

from .intervals import wilson

NEWCOMBE_10_INDEPENDENT = ("Newcombe (1998) method 10: hybrid score interval for the difference of independent "
                           "proportions from the Wilson limits of each; Fisher's exact test (two-sided) for p")
UNPAIRED_DELONG = ("difference of AUROCs on independent samples: DeLong variance of each, added; two-sided z test, "
                   "normal 95% interval")
NAN = float("nan")


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's method 10 interval for ``k2/n2 - k1/n1``; (nan, nan) when either sample is empty."""
    if n1 <= 0 or n2 <= 0:
        return NAN, NAN
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, level)
    l2, u2 = wilson(k2, n2, level)
    difference = p2 - p1
    lower = difference - math.hypot(p2 - l2, u1 - p1)
    upper = difference + math.hypot(u2 - p2, p1 - l1)
    return max(-1.0, lower), min(1.0, upper)


def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact p-value of the 2x2 table (successes, failures) x (first, second)."""
    if n1 <= 0 or n2 <= 0:
        return NAN
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def proportion_difference(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> dict:
    """``{"method", "difference", "ci95", "p_value"}`` of ``k2/n2 - k1/n1``."""
    difference = k2 / n2 - k1 / n1 if n1 > 0 and n2 > 0 else NAN
    return {"method": NEWCOMBE_10_INDEPENDENT, "difference": difference,
            "ci95": list(newcombe_difference(k1, n1, k2, n2, level)), "p_value": fisher_p(k1, n1, k2, n2)}


def auroc_difference(auc1: float, variance1: float, auc2: float, variance2: float, level: float = 0.95) -> dict:
    """``{"method", "difference", "ci95", "p_value", "z", "se"}`` of ``auc2 - auc1`` from two
    independent samples; NaNs when an AUROC or variance is missing."""
    values = (auc1, variance1, auc2, variance2)
    if any(v is None or not math.isfinite(v) for v in values):
        return {"method": UNPAIRED_DELONG, "difference": NAN, "ci95": [NAN, NAN], "p_value": NAN, "z": NAN,
                "se": NAN}
    difference = auc2 - auc1
    se = math.sqrt(max(variance1, 0.0) + max(variance2, 0.0))
    if se > 0:
        z = difference / se
        p = float(2 * stats.norm.sf(abs(z)))
    else:  # both AUROCs without sampling variation (e.g. both 1)
        z, p = (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    half = float(stats.norm.ppf(0.5 + level / 2)) * se
    return {"method": UNPAIRED_DELONG, "difference": difference,
            "ci95": [max(-1.0, difference - half), min(1.0, difference + half)], "p_value": p, "z": z, "se": se}
