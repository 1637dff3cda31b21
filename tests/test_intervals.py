"""Closed-form intervals against references, calibration, and the threshold policies."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from validation.bootstrap import bootstrap
from validation.calibration import (
    expected_calibration_error,
    fit_calibration,
    negative_log_likelihood,
    reliability,
    sigmoid,
)
from validation.intervals import (
    DELONG,
    NEWCOMBE_AUC,
    auroc_interval,
    bayes_predictive_values,
    clopper_pearson,
    delong,
    exact_intervals,
    lower_bound_for_acceptance,
    newcombe_auc,
    predictive_values_interval,
    wilson,
)
from validation.metrics import auroc, confusion, from_confusion, ranking
from validation.threshold import (
    F1_PLATEAU,
    MAX_F1,
    TARGET_SPECIFICITY,
    ThresholdPolicy,
    f1_plateau_threshold,
    max_f1_threshold,
    specificity_threshold,
)


@pytest.mark.requirement("REQ-EVAL-003")
@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 400), data=st.data())
def test_clopper_pearson_equals_scipy_exact_interval(n, data):
    k = data.draw(st.integers(0, n))
    reference = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 400), data=st.data())
def test_wilson_equals_scipy_wilson_interval(n, data):
    k = data.draw(st.integers(0, n))
    reference = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(k, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


def test_exact_interval_does_not_collapse_when_every_positive_is_found():
    assert clopper_pearson(25, 25)[0] == pytest.approx(0.8628, abs=1e-4)  # (alpha/2)^(1/n): textbook value
    assert clopper_pearson(0, 0) != clopper_pearson(0, 0)  # nan, never a silent 0 or 1


def _delong_by_definition(probs, labels):
    """An independent implementation: structural components by explicit pairwise comparison."""
    positives, negatives = probs[labels == 1], probs[labels == 0]
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    variance = v10.var(ddof=1) / len(positives) + v01.var(ddof=1) / len(negatives)
    return auc, np.sqrt(variance)


@pytest.mark.requirement("REQ-EVAL-003")
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(2, 40), n=st.integers(2, 40), levels=st.integers(2, 30))
def test_delong_equals_the_pairwise_definition_with_ties(seed, m, n, levels):
    rng = np.random.default_rng(seed)
    probs = np.r_[rng.integers(0, levels, m) + 1.0, rng.integers(0, levels, n)] / (levels + 1)  # many ties
    labels = np.r_[np.ones(m), np.zeros(n)]
    result = delong(probs, labels)
    auc, se = _delong_by_definition(probs, labels)
    assert result["value"] == pytest.approx(auc, abs=1e-12) and result["se"] == pytest.approx(se, abs=1e-12)
    assert result["value"] == pytest.approx(auroc(ranking(probs, labels)), abs=1e-12)


def test_delong_interval_is_close_to_the_bootstrap_on_a_large_sample():
    rng = np.random.default_rng(7)
    labels = (rng.random(3000) < 0.3).astype(float)
    probs = sigmoid(rng.normal(1.2 * labels, 1.0))
    interval = delong(probs, labels)["ci95"]
    boot = bootstrap(probs, labels, np.arange(len(labels)), 0.5, 500, 1, metrics=("auroc",))["auroc"]["ci95"]
    assert interval == pytest.approx(boot, abs=0.006)


def test_hanley_mcneil_worked_example_standard_error():
    """Hanley & McNeil (1982), table 1: 58 normal and 51 abnormal CT ratings on a 5-point scale,
    AUROC 0.893; their exponential approximation of the SE is 0.032, and DeLong's estimate is
    close to it."""
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    probs = np.r_[abnormal, normal] / 5.0
    labels = np.r_[np.ones(len(abnormal)), np.zeros(len(normal))]
    result = delong(probs, labels)
    assert result["value"] == pytest.approx(0.893, abs=0.0005)
    assert result["se"] == pytest.approx(0.032, abs=0.004)


def test_bayes_predictive_values_match_a_confusion_table():
    c = {"tp": 90, "fn": 10, "tn": 720, "fp": 180}  # prevalence 0.1, sensitivity 0.9, specificity 0.8
    direct = from_confusion(c)
    assert bayes_predictive_values(0.9, 0.8, 0.1) == pytest.approx({"ppv": direct["ppv"], "npv": direct["npv"]})


# --- calibration ----------------------------------------------------------------------------
def test_ece_on_a_constructed_example():
    probs = np.array([0.05, 0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 0])
    # bins: [0,0.1): p 0.05, observed 0 -> gap 0.05 (2 images); [0.1,0.2): 0.15 vs 0.5 -> 0.35 (2);
    # [0.9,1]: 0.95 vs 0.75 -> 0.20 (4); ECE = (2*0.05 + 2*0.35 + 4*0.20) / 8 = 0.2
    assert expected_calibration_error(probs, labels) == pytest.approx(0.2)
    bins = reliability(probs, labels)
    assert sum(b["n"] for b in bins) == 8 and bins[-1]["bin"] == [0.9, 1.0] and bins[-1]["observed"] == 0.75


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibration_lowers_validation_nll(method):
    rng = np.random.default_rng(3)
    labels = (rng.random(2000) < 0.4).astype(float)
    logits = 4.0 * rng.normal(2 * labels - 1, 1.0) - 2.5  # over-confident and shifted, as a weighted loss leaves it
    calibration = fit_calibration(logits, labels, method)
    before = negative_log_likelihood(sigmoid(logits), labels)
    after = negative_log_likelihood(calibration.probabilities(logits), labels)
    assert after < before - 0.05
    assert expected_calibration_error(calibration.probabilities(logits), labels) < \
        expected_calibration_error(sigmoid(logits), labels)


def test_calibration_survives_a_separable_validation_split():
    labels = np.r_[np.zeros(50), np.ones(50)]
    logits = np.r_[np.linspace(-9, -3, 50), np.linspace(3, 9, 50)]  # perfectly separable
    for method in ("temperature", "platt"):
        probs = fit_calibration(logits, labels, method).probabilities(logits)
        assert np.isfinite(probs).all() and probs.max() < 1.0 and probs.min() > 0.0


def test_calibration_is_monotone_and_keeps_the_auroc():
    rng = np.random.default_rng(5)
    labels = (rng.random(300) < 0.5).astype(float)
    logits = rng.normal(labels, 1.0)
    calibrated = fit_calibration(logits, labels, "platt").probabilities(logits)
    assert auroc(ranking(calibrated, labels)) == pytest.approx(auroc(ranking(logits, labels)))


# --- threshold policies ---------------------------------------------------------------------
@pytest.mark.requirement("REQ-EVAL-001")
def test_plateau_centre_sits_between_the_classes_of_a_separable_split():
    negatives, positives = np.linspace(0.01, 0.05, 20), np.linspace(0.5, 0.99, 20)
    probs, labels = np.r_[negatives, positives], np.r_[np.zeros(20), np.ones(20)]
    assert max_f1_threshold(probs, labels) == pytest.approx(0.5)  # on the edge of the gap
    centre = f1_plateau_threshold(probs, labels, tolerance=0.0)
    assert 0.05 < centre < 0.5
    logit = np.log(centre / (1 - centre))
    assert logit == pytest.approx((np.log(0.5 / 0.5) + np.log(0.05 / 0.95)) / 2)


def test_plateau_keeps_the_validation_decisions_of_max_f1_with_zero_tolerance():
    probs = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    labels = np.array([1, 0, 1, 0, 0])
    t = f1_plateau_threshold(probs, labels, 0.0)
    assert 0.2 < t <= 0.7  # inside the gap below the max-F1 candidate 0.7
    assert confusion(probs, labels, t) == confusion(probs, labels, max_f1_threshold(probs, labels))


def test_target_specificity_is_reached_with_the_lowest_such_threshold():
    rng = np.random.default_rng(9)
    labels = (rng.random(500) < 0.3).astype(float)
    probs = sigmoid(rng.normal(2 * labels, 1.0))
    t = specificity_threshold(probs, labels, 0.9)
    assert from_confusion(confusion(probs, labels, t))["specificity"] >= 0.9
    below = probs[probs < t].max()
    assert from_confusion(confusion(probs, labels, below))["specificity"] < 0.9


def test_policies_are_validated_and_named():
    assert ThresholdPolicy().name == MAX_F1
    assert ThresholdPolicy(TARGET_SPECIFICITY, 0.95).name == "target_specificity>=0.95"
    assert ThresholdPolicy(F1_PLATEAU, tolerance=0.02).name == "f1_plateau(0.02)"
    for bad in (dict(rule="median"), dict(rule=TARGET_SPECIFICITY), dict(rule=TARGET_SPECIFICITY, target=1.5)):
        with pytest.raises(ValueError):
            ThresholdPolicy(**bad)


# --- AUROC interval when DeLong's is degenerate: Newcombe (2006) method 5 -----------------------
Z = float(stats.norm.ppf(0.975))  # 1.959964


def _newcombe_variance(t, m, n):
    """Newcombe (2006) eq. for method 5, written out independently of the module."""
    n_star = (m + n) / 2
    return t * (1 - t) * (1 + (n_star - 1) * (1 - t) / (2 - t) + (n_star - 1) * t / (1 + t)) / (m * n)


@pytest.mark.requirement("REQ-ASSESS-001")
def test_newcombe_auc_by_hand_at_perfect_separation():
    # m = n = 1, AUROC 1: N* - 1 = 0, so (1 - t)^2 = z^2 t (1 - t)  ->  1 - t = z^2 t  ->  t = 1 / (1 + z^2)
    #   = 1 / (1 + 3.841459) = 0.206549
    assert newcombe_auc(1.0, 1, 1) == pytest.approx((1 / (1 + Z * Z), 1.0), abs=1e-10)
    assert newcombe_auc(1.0, 1, 1)[0] == pytest.approx(0.206549, abs=1e-6)
    # m = n = 3, AUROC 1 (3 positives above 3 negatives): N* - 1 = 2, and dividing (1 - t)^2 = z^2 V(t) by
    # (1 - t): 1 - t = (z^2 / 9) t [1 + 2 (1 - t)/(2 - t) + 2 t/(1 + t)]. At t = 0.501019:
    # (1 - t)/(2 - t) = 0.498981/1.498981 = 0.332880, t/(1 + t) = 0.501019/1.501019 = 0.333786,
    # bracket = 1 + 2 (0.332880 + 0.333786) = 2.333332; right side 0.426829 x 0.501019 x 2.333332 = 0.498981
    # = 1 - t. So the 95% interval is [0.5010, 1]: five of its six decimal digits below DeLong's [1, 1].
    lo, hi = newcombe_auc(1.0, 3, 3)
    assert lo == pytest.approx(0.501019, abs=2e-6) and hi == 1.0
    t = lo
    assert (1 - t) == pytest.approx(Z * Z / 9 * t * (1 + 2 * (1 - t) / (2 - t) + 2 * t / (1 + t)), abs=1e-12)
    assert newcombe_auc(0.0, 3, 3) == pytest.approx((0.0, 1 - lo), abs=1e-12)  # symmetric in t and 1 - t


@settings(max_examples=120, deadline=None)
@given(m=st.integers(1, 80), n=st.integers(1, 80), data=st.data())
def test_newcombe_auc_solves_its_defining_equations(m, n, data):
    """The bounds are the score-equation roots (auc - t)^2 = z^2 V(t) either side of the estimate,
    the set {t: (auc - t)^2 <= z^2 V(t)} is exactly [lo, hi], and the width is never 0."""
    auc = data.draw(st.integers(0, m * n)) / (m * n)
    lo, hi = newcombe_auc(auc, m, n)
    assert 0.0 <= lo <= auc <= hi <= 1.0 and hi - lo > 0
    for bound in (lo, hi):
        if bound not in (0.0, 1.0) or bound != auc:
            assert (auc - bound) ** 2 == pytest.approx(Z * Z * _newcombe_variance(bound, m, n), abs=1e-10)
    grid = np.linspace(0, 1, 2001)
    inside = (auc - grid) ** 2 <= Z * Z * _newcombe_variance(grid, m, n) + 1e-12
    assert inside[(grid > lo + 1e-6) & (grid < hi - 1e-6)].all()
    assert not inside[(grid < lo - 1e-6) | (grid > hi + 1e-6)].any()
    assert newcombe_auc(1 - auc, m, n) == pytest.approx((1 - hi, 1 - lo), abs=1e-9)


@pytest.mark.parametrize("shift", [0.6, 1.2, 2.0])
def test_newcombe_auc_agrees_with_delong_on_large_non_degenerate_samples(shift):
    rng = np.random.default_rng(11)
    probs = np.r_[rng.normal(shift, 1.0, 600), rng.normal(0.0, 1.0, 800)]
    labels = np.r_[np.ones(600), np.zeros(800)]
    d = delong(probs, labels)
    assert 0.6 < d["value"] < 0.95
    assert newcombe_auc(d["value"], 600, 800) == pytest.approx(d["ci95"], abs=0.006)


@pytest.mark.requirement("REQ-ASSESS-001")
def test_auroc_interval_falls_back_to_newcombe_only_when_delong_is_degenerate():
    separated = auroc_interval(np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), np.array([1, 1, 1, 0, 0, 0]))
    assert delong(np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), np.array([1, 1, 1, 0, 0, 0]))["ci95"] == [1.0, 1.0]
    assert separated["method"] == NEWCOMBE_AUC and "perfect separation" in separated["delong_degenerate"]
    assert separated["ci95"] == pytest.approx([0.501019, 1.0], abs=2e-6)
    rng = np.random.default_rng(2)
    labels = (rng.random(200) < 0.4).astype(float)
    probs = rng.normal(labels, 1.0)
    ordinary = auroc_interval(probs, labels)
    assert ordinary == {"ci95": delong(probs, labels)["ci95"], "method": DELONG, "delong_degenerate": None}
    one_positive = auroc_interval(np.array([0.9, 0.5, 0.4, 0.1]), np.array([1, 0, 0, 0]))
    assert one_positive["method"] == NEWCOMBE_AUC and "fewer than 2" in one_positive["delong_degenerate"]
    no_positive = auroc_interval(np.array([0.5, 0.4]), np.array([0, 0]))
    assert no_positive["method"] is None and np.isnan(no_positive["ci95"]).all()


def test_zero_width_or_missing_intervals_never_give_a_lower_bound_for_acceptance():
    assert lower_bound_for_acceptance([0.8, 0.9]) == (0.8, None)
    lower, why = lower_bound_for_acceptance([1.0, 1.0])
    assert lower == 1.0 and "zero width" in why
    assert lower_bound_for_acceptance(clopper_pearson(0, 0))[1].startswith("no interval")
    assert lower_bound_for_acceptance([None, None])[1].startswith("no interval")


# --- PPV and NPV at a prevalence, and the internal closed-form intervals ------------------------
def test_predictive_values_interval_by_hand():
    # Each Clopper-Pearson limit is one-sided at q = sqrt(0.975) = 0.987421, i.e. alpha' = 1 - q = 0.0125786 a side.
    # With every positive detected (10/10) and every negative cleared (20/20) the exact lower limits are
    # alpha'^(1/n): sensitivity 0.0125786^(1/10) = 0.645604, specificity 0.0125786^(1/20) = 0.803495.
    # At prevalence 0.1: PPV_lo = 0.1 x 0.645604 / (0.1 x 0.645604 + 0.9 x (1 - 0.803495)) = 0.0645604 / 0.2414149
    # = 0.267424; NPV_lo = 0.9 x 0.803495 / (0.9 x 0.803495 + 0.1 x (1 - 0.645604)) = 0.723146 / 0.758585 = 0.953282.
    at = predictive_values_interval(10, 10, 20, 20, 0.1)
    assert at["ppv"] == 1.0 and at["npv"] == 1.0 and at["prevalence"] == 0.1
    assert at["ppv_ci95"] == pytest.approx([0.267424, 1.0], abs=2e-6)
    assert at["npv_ci95"] == pytest.approx([0.953282, 1.0], abs=2e-6)
    assert "Clopper-Pearson" in at["method"] and "Bayes" in at["method"]
    # 9/10 and 18/20 at 0.1: PPV = 0.09 / (0.09 + 0.9 x 0.1) = 0.5; NPV = 0.81 / (0.81 + 0.01) = 0.987805
    at = predictive_values_interval(9, 10, 18, 20, 0.1)
    assert at["ppv"] == pytest.approx(0.5) and at["npv"] == pytest.approx(0.81 / 0.82)
    for key in ("ppv", "npv"):
        lo, hi = at[f"{key}_ci95"]
        assert 0.0 <= lo < at[key] < hi <= 1.0


def test_predictive_values_interval_covers_at_least_95_percent():
    rng = np.random.default_rng(4)
    sensitivity, specificity, prevalence, n_pos, n_neg = 0.85, 0.9, 0.15, 30, 60
    truth = bayes_predictive_values(sensitivity, specificity, prevalence)
    covered = {"ppv": 0, "npv": 0}
    trials = 2000
    for tp, tn in zip(rng.binomial(n_pos, sensitivity, trials), rng.binomial(n_neg, specificity, trials)):
        at = predictive_values_interval(int(tp), n_pos, int(tn), n_neg, prevalence)
        for key in covered:
            covered[key] += at[f"{key}_ci95"][0] <= truth[key] <= at[f"{key}_ci95"][1]
    assert min(covered.values()) / trials >= 0.95


@pytest.mark.requirement("REQ-EVAL-003")
def test_exact_intervals_of_a_split_by_hand():
    counts = {"tp": 8, "fn": 2, "tn": 15, "fp": 5}  # sensitivity 8/10, specificity 15/20, PPV 8/13, NPV 15/17
    probs = np.r_[np.linspace(0.6, 0.95, 10), np.linspace(0.05, 0.7, 20)]
    labels = np.r_[np.ones(10), np.zeros(20)]
    out = exact_intervals(counts, probs, labels)
    for name, (k, n) in {"sensitivity": (8, 10), "specificity": (15, 20), "ppv": (8, 13), "npv": (15, 17),
                         "accuracy": (23, 30)}.items():
        reference = stats.binomtest(k, n).proportion_ci(method="exact")
        assert (out[name]["k"], out[name]["n"]) == (k, n)
        assert out[name]["clopper_pearson"] == pytest.approx([reference.low, reference.high], abs=1e-12)
    d = delong(probs, labels)
    assert out["auroc"]["delong"]["ci95"] == d["ci95"]
    assert out["auroc"]["delong"]["variance"] == pytest.approx(d["se"] ** 2)


# --- every band stays inside its range ----------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(n1=st.integers(0, 60), n2=st.integers(0, 60), data=st.data())
def test_every_interval_stays_inside_its_range(n1, n2, data):
    from validation.paired import PairedTable, newcombe_paired
    from validation.two_sample import newcombe_difference

    k1, k2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    for lo, hi in (clopper_pearson(k1, n1), wilson(k1, n1)):
        assert (n1 == 0 and np.isnan([lo, hi]).all()) or (0.0 <= lo < hi <= 1.0)
    lo, hi = newcombe_difference(k1, n1, k2, n2)
    assert (min(n1, n2) == 0 and np.isnan([lo, hi]).all()) or (-1.0 <= lo <= k2 / n2 - k1 / n1 <= hi <= 1.0)
    cells = [data.draw(st.integers(0, 15)) for _ in range(4)]
    lo, hi = newcombe_paired(PairedTable(*cells))
    assert sum(cells) == 0 or -1.0 <= lo <= hi <= 1.0
    if n1 and n2:
        at = predictive_values_interval(k1, n1, k2, n2, data.draw(st.floats(0.01, 0.99)))
        for key in ("ppv", "npv"):
            assert 0.0 <= at[f"{key}_ci95"][0] <= at[f"{key}_ci95"][1] <= 1.0
