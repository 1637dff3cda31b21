"""Paired statistics of two devices (cxr-device compare): hand computations on small tables,
the references they share with scikit-learn and SciPy, and the symmetries every paired
comparison must have (identical devices, swapped roles)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from validation.intervals import delong, delong_components, wilson
from validation.margins import MET, NOT_ENOUGH_DATA, NOT_MET, Margins, judge
from validation.paired import (
    PairedTable,
    agreement,
    mcnemar_exact,
    newcombe_paired,
    paired_delong,
    paired_proportion,
)

Z = stats.norm.ppf(0.975)


# --- paired DeLong -------------------------------------------------------------------------------
@pytest.mark.requirement("REQ-COMPARE-001", "REQ-EVAL-003")
def test_paired_delong_equals_the_hand_computation():
    """Three positives, two negatives. psi(p, n) = 1 when p > n, 1/2 on a tie, 0 otherwise.

    baseline  positives 0.9 0.6 0.3, negatives 0.5 0.2
      V10 (share of negatives each positive outranks): 0.9 -> 2/2, 0.6 -> 2/2, 0.3 -> 1/2
      V01 (share of positives outranking each negative): 0.5 -> 2/3, 0.2 -> 3/3
      AUROC = mean V10 = 2.5/3 = 5/6
    candidate positives 0.8 0.4 0.7, negatives 0.5 0.6
      V10: 0.8 -> 1, 0.4 -> 0, 0.7 -> 1;  V01: 0.5 -> 2/3, 0.6 -> 2/3;  AUROC = 2/3
    difference 2/3 - 5/6 = -1/6
      V10 differences 0, -1, 1/2: mean -1/6, squared deviations 1/36 + 25/36 + 16/36 = 42/36,
        variance (n-1 = 2) 21/36 = 7/12, over m = 3: 7/36
      V01 differences 0, -1/3: mean -1/6, squared deviations 1/36 + 1/36, variance (n-1 = 1) 1/18,
        over n = 2: 1/36
      var = 7/36 + 1/36 = 2/9, se = sqrt(2)/3, z = (-1/6) / (sqrt(2)/3) = -1/(2 sqrt 2) = -0.35355
      p = 2 (1 - Phi(0.35355)) = 0.72367; 95% CI -1/6 -+ 1.96 sqrt(2)/3 = [-1.0907 -> -1, 0.7573]
    """
    labels = np.array([1, 1, 1, 0, 0])
    baseline = np.array([0.9, 0.6, 0.3, 0.5, 0.2])
    candidate = np.array([0.8, 0.4, 0.7, 0.5, 0.6])
    result = paired_delong(baseline, candidate, labels)
    assert result["baseline"] == pytest.approx(5 / 6) == roc_auc_score(labels, baseline)
    assert result["candidate"] == pytest.approx(2 / 3) == roc_auc_score(labels, candidate)
    assert result["difference"] == pytest.approx(-1 / 6)
    assert result["se"] == pytest.approx(math.sqrt(2) / 3)
    assert result["z"] == pytest.approx(-1 / (2 * math.sqrt(2)))
    assert result["p_value"] == pytest.approx(0.72367, abs=1e-5)
    assert result["ci95"] == pytest.approx([-1.0, -1 / 6 + Z * math.sqrt(2) / 3])
    assert (result["n_positive"], result["n_negative"]) == (3, 2)


def _paired_delong_by_definition(x, y, labels):
    """DeLong et al. (1988) as written: the 2x2 covariance matrix S = S10/m + S01/n of both
    devices' components from explicit pairwise comparisons, var = S11 + S22 - 2 S12."""
    def components(scores):
        pos, neg = scores[labels == 1], scores[labels == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (v10x, v01x), (v10y, v01y) = components(x), components(y)
    m, n = len(v10x), len(v01x)
    s = np.cov(np.vstack([v10x, v10y])) / m + np.cov(np.vstack([v01x, v01y])) / n
    return v10y.mean() - v10x.mean(), math.sqrt(max(s[0, 0] + s[1, 1] - 2 * s[0, 1], 0.0))


@pytest.mark.requirement("REQ-COMPARE-001")
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), m=st.integers(2, 60), n=st.integers(2, 60), ties=st.booleans())
def test_paired_delong_equals_the_definition_and_sklearn(seed, m, n, ties):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(m, int), np.zeros(n, int)]
    x = rng.normal(labels * 1.0, 1.0)
    y = x + rng.normal(0, 0.7, m + n)  # correlated with x, as two models of the same images are
    if ties:
        x, y = np.round(x, 1), np.round(y, 1)
    result = paired_delong(x, y, labels)
    difference, se = _paired_delong_by_definition(x, y, labels)
    assert result["baseline"] == pytest.approx(roc_auc_score(labels, x), abs=1e-12)
    assert result["candidate"] == pytest.approx(roc_auc_score(labels, y), abs=1e-12)
    assert result["difference"] == pytest.approx(difference, abs=1e-12)
    assert result["se"] == pytest.approx(se, abs=1e-9)
    assert delong_components(x, labels)[0] == result["baseline"] == delong(x, labels)["value"]


def test_paired_delong_is_undefined_without_two_cases_per_class():
    result = paired_delong(np.array([0.9, 0.1, 0.2]), np.array([0.8, 0.3, 0.1]), np.array([1, 0, 0]))
    assert result["difference"] == pytest.approx(0.0) and math.isnan(result["se"]) and math.isnan(result["ci95"][0])
    none = paired_delong(np.array([0.9, 0.1]), np.array([0.8, 0.3]), np.array([1, 1]))
    assert math.isnan(none["baseline"]) and math.isnan(none["difference"])


# --- Newcombe's method 10 ------------------------------------------------------------------------
@pytest.mark.requirement("REQ-COMPARE-001", "REQ-EVAL-003")
def test_newcombe_method_10_equals_the_hand_computation():
    """Cavo et al. (2012), the paired example of Fagerland, Lydersen & Laake (Statistical Analysis
    of Contingency Tables, ch. 8): a = 59 both, b = 6 first only, c = 16 second only, d = 80.

    n = 161; p1 = 65/161 = 0.403727, p2 = 75/161 = 0.465839, difference -10/161 = -0.062112
    Wilson 95%: 65/161 -> [0.331037, 0.480904], 75/161 -> [0.390481, 0.542789]
    phi: ad - bc = 4720 - 96 = 4624 > n/2 = 80.5, so (4624 - 80.5) / sqrt(65 * 96 * 75 * 86)
         = 4543.5 / sqrt(40248000) = 4543.5 / 6344.131 = 0.716174
    lower = D - sqrt((p1 - l1)^2 + (u2 - p2)^2 - 2 phi (p1 - l1)(u2 - p2))
          = -0.062112 - sqrt(0.072690^2 + 0.076950^2 - 2 * 0.716174 * 0.072690 * 0.076950) = -0.118621
    upper = D + sqrt((p2 - l2)^2 + (u1 - p1)^2 - 2 phi (p2 - l2)(u1 - p1))
          = -0.062112 + sqrt(0.075358^2 + 0.077177^2 - 2 * 0.716174 * 0.075358 * 0.077177) = -0.004625
    The R package contingencytables prints -0.0621 (95% CI -0.1186 to -0.0046) for this table.
    """
    table = PairedTable(both=59, candidate_only=6, baseline_only=16, neither=80)
    assert wilson(65, 161) == pytest.approx((0.331037, 0.480904), abs=1e-6)
    assert wilson(75, 161) == pytest.approx((0.390481, 0.542789), abs=1e-6)
    lo, hi = newcombe_paired(table)
    assert (lo, hi) == pytest.approx((-0.118621, -0.004625), abs=1e-6)
    p1, p2, phi = 65 / 161, 75 / 161, 4543.5 / math.sqrt(65 * 96 * 75 * 86)
    assert phi == pytest.approx(0.716174, abs=1e-6)
    x, y = p1 - 0.331037, 0.542789 - p2
    assert (x, y) == pytest.approx((0.072690, 0.076950), abs=1e-6)
    assert lo == pytest.approx(p1 - p2 - math.sqrt(x * x + y * y - 2 * phi * x * y), abs=1e-6)


def test_newcombe_phi_is_zero_for_small_positive_association_and_empty_margins():
    """Bentur et al. (2009), the book's other example: a=1, b=1, c=7, d=12. ad - bc = 12 - 7 = 5 lies in
    [0, n/2 = 10.5], so phi = 0 and the limits are those of the independent square-and-add:
    p1 = 2/21, p2 = 8/21; Wilson 2/21 -> [0.026519, 0.289141], 8/21 -> [0.207510, 0.591213];
    lower = -6/21 - sqrt((2/21 - 0.026519)^2 + (0.591213 - 8/21)^2) = -0.285714 - sqrt(0.068719^2 + 0.210261^2)
          = -0.506920
    upper = -6/21 + sqrt((8/21 - 0.207510)^2 + (0.289141 - 2/21)^2) = -0.285714 + sqrt(0.173442^2 + 0.193903^2)
          = -0.025559"""
    assert newcombe_paired(PairedTable(1, 1, 7, 12)) == pytest.approx((-0.506920, -0.025559), abs=1e-6)
    # every case a success of both: a margin is empty, phi = 0, the lower limit is -(1 - Wilson lower of n/n)
    lo, hi = newcombe_paired(PairedTable(20, 0, 0, 0))
    assert lo == pytest.approx(-(1 - wilson(20, 20)[0])) and hi == pytest.approx(1 - wilson(20, 20)[0])
    assert all(math.isnan(v) for v in newcombe_paired(PairedTable(0, 0, 0, 0)))


# --- McNemar and kappa ---------------------------------------------------------------------------
@pytest.mark.requirement("REQ-COMPARE-001", "REQ-EVAL-003")
def test_exact_mcnemar_equals_the_binomial_sum_and_scipy():
    """b = 6, c = 16, 22 discordant pairs: P(X <= 6 | Bin(22, 1/2)) = (1 + 22 + 231 + 1540 + 7315 +
    26334 + 74613) / 2^22 = 110056 / 4194304 = 0.0262394, two-sided 0.0524788."""
    table = PairedTable(59, 6, 16, 80)
    assert mcnemar_exact(table) == pytest.approx(2 * 110056 / 2**22, abs=1e-12)
    assert mcnemar_exact(table) == pytest.approx(stats.binomtest(6, 22, 0.5).pvalue)
    assert mcnemar_exact(PairedTable(5, 0, 0, 3)) == 1.0  # no discordant pair


@pytest.mark.requirement("REQ-COMPARE-001", "REQ-EVAL-003")
def test_kappa_equals_the_hand_computation_and_sklearn():
    """20 both positive, 5 baseline only, 10 candidate only, 65 both negative (n = 100):
    observed 0.85; chance 0.25 * 0.30 + 0.75 * 0.70 = 0.60; kappa (0.85 - 0.60) / 0.40 = 0.625."""
    b = np.r_[np.ones(25, bool), np.zeros(75, bool)]
    c = np.r_[np.ones(20, bool), np.zeros(5, bool), np.ones(10, bool), np.zeros(65, bool)]
    result = agreement(b, c)
    assert result["table"] == {"both_positive": 20, "baseline_only_positive": 5, "candidate_only_positive": 10,
                               "both_negative": 65}
    assert result["observed_agreement"] == pytest.approx(0.85) and result["expected_agreement"] == pytest.approx(0.6)
    assert result["kappa"] == pytest.approx(0.625) == cohen_kappa_score(b, c)
    assert agreement(np.ones(4, bool), np.ones(4, bool))["kappa"] is None  # one decision for all: undefined


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=80))
def test_kappa_and_mcnemar_agree_with_the_references(pairs):
    b, c = (np.array(v, dtype=bool) for v in zip(*pairs))
    result = agreement(b, c)
    if result["kappa"] is not None:
        assert result["kappa"] == pytest.approx(cohen_kappa_score(b, c), abs=1e-12)
    table = PairedTable.from_outcomes(b, c)
    if table.candidate_only + table.baseline_only:
        reference = stats.binomtest(table.candidate_only, table.candidate_only + table.baseline_only).pvalue
        assert mcnemar_exact(table) == pytest.approx(reference)


# --- symmetries ----------------------------------------------------------------------------------
def _comparison(baseline, candidate, labels, threshold_b=0.5, threshold_c=0.5):
    labels = np.asarray(labels) == 1
    detected_b, detected_c = baseline >= threshold_b, candidate >= threshold_c
    return {"auroc": paired_delong(baseline, candidate, labels),
            "sensitivity": paired_proportion(detected_b[labels], detected_c[labels]),
            "specificity": paired_proportion(~detected_b[~labels], ~detected_c[~labels]),
            "agreement": agreement(detected_b, detected_c)}


scores = st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.floats(0, 1, allow_nan=False),
                            st.integers(0, 1)), min_size=4, max_size=120)


@pytest.mark.requirement("REQ-COMPARE-001")
@settings(max_examples=150, deadline=None)
@given(rows=scores)
def test_identical_devices_compare_as_identical(rows):
    probs = np.array([r[0] for r in rows])
    labels = np.array([r[2] for r in rows])
    result = _comparison(probs, probs.copy(), labels)
    auroc = result["auroc"]
    if labels.min() == 0 and labels.max() == 1:
        assert auroc["difference"] == 0.0
        if auroc["n_positive"] > 1 and auroc["n_negative"] > 1:
            assert auroc["se"] == 0.0 and auroc["ci95"] == [0.0, 0.0] and auroc["p_value"] == 1.0
    for name in ("sensitivity", "specificity"):
        part = result[name]
        if part["baseline"]["n"]:
            assert part["difference"] == 0.0 and part["mcnemar"]["p_value"] == 1.0
            assert part["table"]["candidate_only"] == part["table"]["baseline_only"] == 0
            assert part["ci95"][0] <= 0.0 <= part["ci95"][1]
    assert result["agreement"]["observed_agreement"] == 1.0
    refusals = {"n_inputs": len(rows), "increase": 0.0}
    verdict = judge(Margins(min_positives=2, min_negatives=2), result["auroc"], result["sensitivity"],
                    result["specificity"], refusals)
    assert verdict["verdict"] != NOT_MET  # met, or the set is too small to tell
    if verdict["verdict"] == NOT_ENOUGH_DATA:
        assert verdict["not_enough_data"]


@pytest.mark.requirement("REQ-COMPARE-001")
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), m=st.integers(100, 300), n=st.integers(100, 300))
def test_identical_devices_meet_the_default_margins_on_100_cases_per_class(seed, m, n):
    """With zero discordant pairs Newcombe's lower limit on n cases is at worst about -0.041 for n = 100
    (all rates checked), so an identical candidate meets margins of -0.05 and -0.02."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(m, int), np.zeros(n, int)]
    probs = rng.random(m + n)
    result = _comparison(probs, probs.copy(), labels, 0.5, 0.5)
    verdict = judge(Margins(), result["auroc"], result["sensitivity"], result["specificity"],
                    {"n_inputs": m + n, "increase": 0.0})
    assert verdict["verdict"] == MET, verdict


def _mirror(interval):
    return [-interval[1], -interval[0]]


@pytest.mark.requirement("REQ-COMPARE-001")
@settings(max_examples=150, deadline=None)
@given(rows=scores, t_b=st.floats(0.05, 0.95), t_c=st.floats(0.05, 0.95))
def test_swapping_baseline_and_candidate_flips_every_sign(rows, t_b, t_c):
    x = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    labels = np.array([r[2] for r in rows])
    forward, backward = _comparison(x, y, labels, t_b, t_c), _comparison(y, x, labels, t_c, t_b)
    a, b = forward["auroc"], backward["auroc"]
    if not math.isnan(a["difference"]):
        assert b["difference"] == -a["difference"] and (a["baseline"], a["candidate"]) == (b["candidate"], b["baseline"])
    if not math.isnan(a["se"]):
        assert b["se"] == a["se"] and b["ci95"] == _mirror(a["ci95"]) and b["p_value"] == a["p_value"]
        assert b["z"] == -a["z"]
    for name in ("sensitivity", "specificity"):
        f, r = forward[name], backward[name]
        if f["baseline"]["n"]:
            assert r["difference"] == -f["difference"]
            assert r["ci95"] == _mirror(f["ci95"])
            assert r["mcnemar"]["p_value"] == f["mcnemar"]["p_value"]
            assert (r["table"]["candidate_only"], r["table"]["baseline_only"]) == \
                   (f["table"]["baseline_only"], f["table"]["candidate_only"])
    assert forward["agreement"]["kappa"] == backward["agreement"]["kappa"]


# --- the verdict ---------------------------------------------------------------------------------
def _proportion(k_b, k_c, n, lo):
    return {"baseline": {"k": k_b, "n": n, "value": k_b / n}, "candidate": {"k": k_c, "n": n, "value": k_c / n},
            "difference": (k_c - k_b) / n, "ci95": [lo, 0.1], "interval_method": "Newcombe"}


@pytest.mark.requirement("REQ-COMPARE-001")
def test_the_verdict_rules():
    auroc = {"difference": 0.0, "ci95": [-0.01, 0.01], "method": "DeLong", "n_positive": 200, "n_negative": 200}
    good = _proportion(180, 180, 200, -0.03)
    refusals = {"n_inputs": 400, "increase": 0.0}
    assert judge(Margins(), auroc, good, good, refusals)["verdict"] == MET
    assert judge(Margins(), {**auroc, "ci95": [-0.02, 0.01]}, good, good, refusals)["verdict"] == NOT_MET  # strict >
    assert judge(Margins(), auroc, _proportion(180, 170, 200, -0.08), good, refusals)["verdict"] == NOT_MET
    worse = judge(Margins(), auroc, good, good, {"n_inputs": 400, "increase": 0.0125})
    assert worse["verdict"] == NOT_MET and worse["criteria"]["refusals"]["met"] is False
    few = judge(Margins(), {**auroc, "n_positive": 29}, good, good, refusals)
    assert few["verdict"] == NOT_ENOUGH_DATA and "min_positives (30)" in few["not_enough_data"][0]
    undefined = judge(Margins(), {**auroc, "ci95": [float("nan"), float("nan")]}, good, good, refusals)
    assert undefined["verdict"] == NOT_ENOUGH_DATA and "undefined" in undefined["not_enough_data"][0]
    # 40 positives all detected by the baseline: an identical candidate's lower bound is -(1 - 0.9124) < -0.05
    small = judge(Margins(), {**auroc, "n_positive": 40}, _proportion(40, 40, 40, -0.0876), good, refusals)
    assert small["verdict"] == NOT_ENOUGH_DATA and "even a candidate" in small["not_enough_data"][0]
    unjudged = judge(Margins(specificity=None), auroc, good, _proportion(180, 100, 200, -0.5), refusals)
    assert unjudged["verdict"] == MET and "specificity" not in unjudged["criteria"]


def test_margins_are_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="less than or equal to 0"):
        Margins(auroc=0.02)
    with pytest.raises(ValidationError, match="at least one"):
        Margins(auroc=None, sensitivity=None, specificity=None)
    with pytest.raises(ValidationError):
        Margins(min_positives=1)
