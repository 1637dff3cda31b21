"""Sample size for the validation study, computed from its acceptance criteria.

For sensitivity and specificity: a one-sided test of H0 ``p <= criterion`` against the expected
value ``p1`` at level alpha (one-sided 0.025, i.e. the lower bound of a two-sided 95% interval)
with the given power (normal approximation, as in Flahault et al., J Clin Epidemiol 2005):

    n = ((z_(1-alpha) sqrt(p0 (1 - p0)) + z_(power) sqrt(p1 (1 - p1))) / (p1 - p0))^2

positives (sensitivity) or negatives (specificity), then divided by the expected prevalence (or
its complement) for the total number of studies. For AUROC: the smallest number of positives
(negatives following the prevalence) whose Hanley-McNeil standard error makes
``expected - (z_(1-alpha) + z_(power)) * SE >= criterion``. The study size is the largest of the
three, and never less than ``min_per_class`` positives and negatives (the subgroup floor: room
for at least 10 of each class in every pre-specified subgroup level). When the expected value
does not exceed the criterion, no size can show it: said so.
"""
from __future__ import annotations

import math
from statistics import NormalDist


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def proportion_n(criterion: float, expected: float, alpha: float = 0.025, power: float = 0.8) -> int | None:
    """Subjects of the relevant class; None when ``expected <= criterion``."""
    if expected <= criterion or expected >= 1:
        return None
    numerator = _z(1 - alpha) * math.sqrt(criterion * (1 - criterion)) + _z(power) * math.sqrt(expected * (1 - expected))
    return math.ceil((numerator / (expected - criterion)) ** 2)


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))


def auroc_positives(criterion: float, expected: float, prevalence: float, alpha: float = 0.025,
                    power: float = 0.8) -> int | None:
    if expected <= criterion or not 0 < prevalence < 1:
        return None
    margin, ratio = _z(1 - alpha) + _z(power), (1 - prevalence) / prevalence
    for n_pos in range(2, 1_000_000):
        n_neg = max(2, math.ceil(n_pos * ratio))
        if expected - margin * hanley_mcneil_se(expected, n_pos, n_neg) >= criterion:
            return n_pos
    return None


def study_size(criteria: dict, expected: dict, prevalence: float, alpha: float = 0.025, power: float = 0.8,
               min_per_class: int = 0) -> dict:
    """Per-criterion sizes and the study size. ``criteria``/``expected`` hold auroc, sensitivity,
    specificity (each may be missing)."""
    rows = {}
    if min_per_class:
        rows["subgroup floor"] = {"positives": min_per_class, "negatives": min_per_class,
                                  "total": max(math.ceil(min_per_class / prevalence),
                                               math.ceil(min_per_class / (1 - prevalence)))}
    if "sensitivity" in criteria:
        n = proportion_n(criteria["sensitivity"], expected["sensitivity"], alpha, power)
        rows["sensitivity"] = {"positives": n, "total": math.ceil(n / prevalence) if n else None}
    if "specificity" in criteria:
        n = proportion_n(criteria["specificity"], expected["specificity"], alpha, power)
        rows["specificity"] = {"negatives": n, "total": math.ceil(n / (1 - prevalence)) if n else None}
    if "auroc" in criteria:
        n = auroc_positives(criteria["auroc"], expected["auroc"], prevalence, alpha, power)
        rows["auroc"] = {"positives": n, "total": math.ceil(n / prevalence) if n else None}
    totals = [r["total"] for r in rows.values()]
    achievable = all(t is not None for t in totals)
    return {"per_criterion": rows, "total": max(totals) if achievable and totals else None,
            "achievable": achievable, "alpha_one_sided": alpha, "power": power, "prevalence": prevalence,
            "min_per_class": min_per_class}
