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
    bayes_predictive_values,
    clopper_pearson,
    delong,
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
