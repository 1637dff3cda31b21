"""Score drift: the device's scores in use against the reference distribution locked in its bundle.

The reference is ``reference_scores.probabilities`` of device.json: the calibrated probabilities of
the data the threshold was chosen on, stored when ``evaluate`` locked the bundle. Two statistics:

* **Population stability index** (PSI): the reference's deciles cut the score axis into (at most)
  ten bins (tied deciles merge, so a reference with many equal scores gives fewer bins); with
  ``e_i`` and ``a_i`` the shares of the reference and of the observed scores in bin ``i``, each
  floored at :data:`FLOOR` so that an empty bin stays finite,
  ``PSI = sum_i (a_i - e_i) ln(a_i / e_i)``. A bin holds the scores ``edge[i-1] <= x < edge[i]``.
* **Two-sample Kolmogorov-Smirnov test** (``scipy.stats.ks_2samp``, two-sided, exact for small
  samples): the largest distance between the two empirical distribution functions and its p-value.

Drift is judged only on at least ``drift_min_scores`` observed scores: below that, the sampling noise
of the PSI alone can exceed a limit of 0.2 (its expectation without drift is about
``(bins - 1) (1/n + 1/m)``). Judged, it is a crossing when the PSI is above ``psi_limit`` or the KS
p-value is below ``drift_p_value``.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

FLOOR = 1e-4
DECILES = tuple(k / 10 for k in range(1, 10))
PSI_METHOD = ("population stability index over the reference's deciles (tied deciles merged), shares floored at "
              f"{FLOOR:g}: sum (observed - reference) x ln(observed / reference)")
KS_METHOD = "two-sample Kolmogorov-Smirnov test, two-sided (scipy.stats.ks_2samp, exact for small samples)"


def bin_edges(reference: np.ndarray) -> np.ndarray:
    """The inner edges of the PSI bins: the reference's distinct deciles."""
    return np.unique(np.quantile(np.asarray(reference, dtype=float), DECILES))


def psi(reference: np.ndarray, observed: np.ndarray) -> float:
    """The population stability index of ``observed`` against ``reference`` (see the module)."""
    reference, observed = np.asarray(reference, dtype=float), np.asarray(observed, dtype=float)
    if not len(reference) or not len(observed):
        raise ValueError("the PSI needs at least one reference and one observed score")
    edges = bin_edges(reference)
    bins = len(edges) + 1
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=bins) / len(reference)
    actual = np.bincount(np.searchsorted(edges, observed, side="right"), minlength=bins) / len(observed)
    expected, actual = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def score_drift(reference: np.ndarray, observed: np.ndarray, psi_limit: float, p_limit: float,
                min_scores: int) -> dict:
    """PSI and KS of ``observed`` against ``reference`` with the limits and whether a limit is
    crossed; ``judged`` is False (and ``crossed`` False) below ``min_scores`` observed scores."""
    observed = np.asarray(observed, dtype=float)
    out = {"n_reference": int(len(reference)), "n_observed": int(len(observed)), "psi": None, "ks_statistic": None,
           "ks_p_value": None, "psi_limit": psi_limit, "p_value_limit": p_limit, "min_scores": min_scores,
           "observed_mean": float(observed.mean()) if len(observed) else None,
           "reference_mean": float(np.mean(reference)) if len(reference) else None,
           "judged": False, "crossed": False, "psi_method": PSI_METHOD, "ks_method": KS_METHOD}
    if len(observed) and len(reference):
        test = ks_2samp(observed, np.asarray(reference, dtype=float))
        out.update(psi=psi(reference, observed), ks_statistic=float(test.statistic), ks_p_value=float(test.pvalue))
    if len(observed) >= min_scores and len(reference):
        out["judged"] = True
        out["crossed"] = bool(out["psi"] > psi_limit or out["ks_p_value"] < p_limit)
    return out
