"""Control limits of a proportion (a p-chart) that stay inside [0, 1] and say how they were made.

A rate monitored in use - the share of studies the device flags, the share it refuses - is
compared with the rate it was released at. With ``n`` studies in a review period the count is
binomial, so the limits are the exact binomial quantiles at the tail probability of the usual
3-sigma limits (0.135% each side): unlike ``p0 +- 3 sqrt(p0 (1 - p0) / n)`` they can never leave
[0, 1], and they stay right for small ``n`` and rates near 0 or 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binom, norm

METHOD = "exact binomial quantiles at the 3-sigma tail probability (0.135% each side), as proportions of n"
TAIL = float(norm.sf(3.0))


@dataclass(frozen=True)
class Limits:
    """The limits of a proportion for ``n`` studies, and how they were made."""

    rate: float
    n: int
    lower: float
    upper: float
    method: str = METHOD

    def as_dict(self) -> dict:
        return {"rate": self.rate, "n": self.n, "lower": self.lower, "upper": self.upper, "method": self.method}


def p_chart(rate: float, n: int, tail: float = TAIL) -> Limits:
    """Lower and upper limits of the observed proportion in ``n`` studies when the true rate is
    ``rate``: the ``tail`` and ``1 - tail`` binomial quantiles divided by ``n`` (in [0, 1])."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a rate is a proportion in [0, 1], got {rate!r}")
    if n < 1:
        raise ValueError(f"a review period needs at least one study, got n = {n}")
    lower = float(binom.ppf(tail, n, rate)) / n
    upper = float(binom.isf(tail, n, rate)) / n
    return Limits(float(rate), int(n), max(0.0, lower), min(1.0, upper))


def expected_flag_rate(prevalence: float, sensitivity: float, specificity: float) -> float:
    """The share of studies a device flags: prevalence x sensitivity + (1 - prevalence) x (1 - specificity)."""
    return prevalence * sensitivity + (1.0 - prevalence) * (1.0 - specificity)


def flag_rate_limits(prevalence: float, sensitivity: float, specificity: float, n: int, basis: str) -> dict:
    """The expected share of flagged studies (:func:`expected_flag_rate`) with its p-chart limits for
    ``n`` studies, and what it was computed from (the postmarket plan and ``monitor`` both use it)."""
    rate = expected_flag_rate(prevalence, sensitivity, specificity)
    return {**p_chart(rate, n).as_dict(), "prevalence": prevalence, "sensitivity": sensitivity,
            "specificity": specificity, "basis": basis}
