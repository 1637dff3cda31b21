"""Paired statistics of two devices read on the same cases (``cxr-device compare``).

Every difference is *candidate - baseline*, so a negative difference is a loss of the candidate.

* AUROC difference: DeLong, DeLong & Clarke-Pearson (1988) for correlated ROC curves. Each
  device's structural components (:func:`validation.intervals.delong_components`) are paired case
  by case; the variance of the difference is the variance of the component differences
  (``var(V10c - V10b)/m + var(V01c - V01b)/n``, i.e. ``S11 + S22 - 2 S12`` of the 2x2 covariance
  matrix), with a two-sided z test and a normal 95% interval.
* Difference of paired proportions (sensitivity on the positives, specificity on the
  negatives): Newcombe (1998), *Improved confidence intervals for the difference between
  binomial proportions based on paired data*, Stat Med 17:2635-50, **method 10** - the hybrid
  score ("square-and-add") interval from the Wilson limits of each proportion, with the
  correlation estimate phi corrected as Newcombe gives it (``ad - bc - n/2`` when
  ``ad - bc > n/2``; 0 when ``0 <= ad - bc <= n/2``; ``ad - bc`` when negative; 0 when a margin
  is empty) and no continuity correction of the Wilson limits (that is method 11). It is *not*
  Tango's (1998) score interval, which inverts a score test by iteration.
* Exact McNemar test: a two-sided binomial test (``scipy.stats.binomtest``) of the discordant
  pairs against one half; p = 1 when there is no discordant pair.
* Agreement of the decisions: the 2x2 table and Cohen's kappa (undefined when chance agreement
  is 1, i.e. both devices give one and the same decision to every case).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .intervals import delong_components, wilson

PAIRED_DELONG = ("DeLong, DeLong & Clarke-Pearson (1988) test for correlated ROC curves: paired structural "
                 "components, two-sided z test, normal 95% interval")
NEWCOMBE_10 = ("Newcombe (1998) method 10: hybrid score interval for the difference of paired proportions from "
               "the Wilson limits of each, phi-corrected, no continuity correction (not Tango's score interval)")
MCNEMAR_EXACT = "exact McNemar test: two-sided binomial test of the discordant pairs against 1/2 (scipy.stats.binomtest)"
NAN = float("nan")


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def paired_delong(baseline: np.ndarray, candidate: np.ndarray, labels: np.ndarray, level: float = 0.95) -> dict:
    """AUROC of each device and their difference with DeLong's paired standard error, z test and
    interval. ``{"baseline", "candidate", "difference", "se", "ci95", "z", "p_value", "method",
    "n_positive", "n_negative"}``; the AUROCs are NaN without both classes, the standard error,
    interval and test without two cases of each."""
    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    out = {"baseline": NAN, "candidate": NAN, "difference": NAN, "se": NAN, "ci95": [NAN, NAN], "z": NAN,
           "p_value": NAN, "method": PAIRED_DELONG, "n_positive": m, "n_negative": n}
    if m == 0 or n == 0:
        return out
    auc_b, v10_b, v01_b = delong_components(baseline, labels)
    auc_c, v10_c, v01_c = delong_components(candidate, labels)
    difference = auc_c - auc_b
    out.update(baseline=auc_b, candidate=auc_c, difference=difference)
    if m < 2 or n < 2:
        return out
    variance = float(np.var(v10_c - v10_b, ddof=1) / m + np.var(v01_c - v01_b, ddof=1) / n)
    se = math.sqrt(max(variance, 0.0))
    half = _z(level) * se
    if se > 0:
        z = difference / se
        p = float(2 * stats.norm.sf(abs(z)))
    else:  # every component difference is the same: no sampling variation of the difference
        z, p = (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    out.update(se=se, ci95=[max(-1.0, difference - half), min(1.0, difference + half)], z=z, p_value=p)
    return out


@dataclass(frozen=True)
class PairedTable:
    """Paired binary outcomes of the same cases under two devices (a success is a correct decision:
    a detected positive, or a cleared negative)."""

    both: int  # a: a success of both devices
    candidate_only: int  # b: the candidate succeeds where the baseline fails
    baseline_only: int  # c: the baseline succeeds where the candidate fails
    neither: int  # d: a failure of both

    @classmethod
    def from_outcomes(cls, baseline: np.ndarray, candidate: np.ndarray) -> PairedTable:
        """The table of two boolean vectors over the same cases."""
        b, c = np.asarray(baseline, dtype=bool), np.asarray(candidate, dtype=bool)
        if b.shape != c.shape:
            raise ValueError(f"paired outcomes of different lengths ({b.size} and {c.size})")
        return cls(int((b & c).sum()), int((c & ~b).sum()), int((b & ~c).sum()), int((~b & ~c).sum()))

    @property
    def n(self) -> int:
        return self.both + self.candidate_only + self.baseline_only + self.neither

    def as_dict(self) -> dict[str, int]:
        return {"both": self.both, "candidate_only": self.candidate_only, "baseline_only": self.baseline_only,
                "neither": self.neither}


def newcombe_paired(table: PairedTable, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's method 10 interval for candidate - baseline success rates; (nan, nan) for no cases."""
    a, b, c, d, n = table.both, table.candidate_only, table.baseline_only, table.neither, table.n
    if n == 0:
        return NAN, NAN
    p1, p2 = (a + b) / n, (a + c) / n  # candidate, baseline
    l1, u1 = wilson(a + b, n, level)
    l2, u2 = wilson(a + c, n, level)
    phi = _phi(a, b, c, d)
    difference = p1 - p2
    return difference - _half(p1 - l1, u2 - p2, phi), difference + _half(p2 - l2, u1 - p1, phi)


def _phi(a: int, b: int, c: int, d: int) -> float:
    """Newcombe's corrected estimate of the correlation between the two proportions."""
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    cross, n = a * d - b * c, a + b + c + d
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(margins)
    return 0.0 if cross >= 0 else cross / math.sqrt(margins)


def _half(x: float, y: float, phi: float) -> float:
    return math.sqrt(max(x * x + y * y - 2 * phi * x * y, 0.0))


def mcnemar_exact(table: PairedTable) -> float:
    """Two-sided exact McNemar p-value (1 when no pair is discordant)."""
    discordant = table.candidate_only + table.baseline_only
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(table.candidate_only, discordant, 0.5).pvalue)


def paired_proportion(baseline: np.ndarray, candidate: np.ndarray, level: float = 0.95) -> dict:
    """Success rates of both devices on the same cases, their difference with Newcombe's method 10
    interval, and the exact McNemar test."""
    table = PairedTable.from_outcomes(baseline, candidate)
    n = table.n
    k_b, k_c = table.both + table.baseline_only, table.both + table.candidate_only
    return {
        "baseline": {"value": k_b / n if n else NAN, "k": k_b, "n": n},
        "candidate": {"value": k_c / n if n else NAN, "k": k_c, "n": n},
        "difference": k_c / n - k_b / n if n else NAN,
        "ci95": list(newcombe_paired(table, level)), "interval_method": NEWCOMBE_10,
        "table": table.as_dict(),
        "mcnemar": {"discordant": table.candidate_only + table.baseline_only, "p_value": mcnemar_exact(table),
                    "method": MCNEMAR_EXACT},
    }


def agreement(baseline_positive: np.ndarray, candidate_positive: np.ndarray) -> dict:
    """The 2x2 table of the two devices' decisions and Cohen's kappa (None when undefined)."""
    b, c = np.asarray(baseline_positive, dtype=bool), np.asarray(candidate_positive, dtype=bool)
    cells = {"both_positive": int((b & c).sum()), "baseline_only_positive": int((b & ~c).sum()),
             "candidate_only_positive": int((c & ~b).sum()), "both_negative": int((~b & ~c).sum())}
    n = sum(cells.values())
    if n == 0:
        return {"table": cells, "n": 0, "observed_agreement": None, "expected_agreement": None, "kappa": None}
    observed = (cells["both_positive"] + cells["both_negative"]) / n
    rate_b, rate_c = b.sum() / n, c.sum() / n
    expected = float(rate_b * rate_c + (1 - rate_b) * (1 - rate_c))
    kappa = None if expected >= 1 else (observed - expected) / (1 - expected)
    return {"table": cells, "n": n, "observed_agreement": observed, "expected_agreement": expected, "kappa": kappa,
            "method": "Cohen's kappa: (observed - chance agreement) / (1 - chance agreement)"}
