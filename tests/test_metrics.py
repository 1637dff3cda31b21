"""Metrics against hand-computed cases and scikit-learn; thresholds; the patient bootstrap."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from validation.bootstrap import bootstrap, patient_weights
from validation.metrics import (
    all_metrics,
    auroc,
    average_precision,
    from_confusion,
    ranking,
)
from validation.threshold import (
    max_f1_threshold,
    sensitivity_threshold,
    youden_threshold,
)

PROBS = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.2])
LABELS = np.array([1, 1, 0, 1, 0, 0])


@pytest.mark.requirement("REQ-EVAL-003")
def test_hand_computed_case():
    m = all_metrics(PROBS, LABELS, threshold=0.65)  # positives called: 0.9, 0.8, 0.7
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(2 / 3) and m["npv"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    assert m["auroc"] == pytest.approx(8 / 9)  # 8 of the 9 positive-negative pairs ordered right
    assert m["brier"] == pytest.approx(0.9 / 6)
    assert m["average_precision"] == pytest.approx((1 + 1 + 3 / 4) / 3)


def test_threshold_is_inclusive_and_ties_score_half():
    assert all_metrics(PROBS, LABELS, threshold=0.6)["sensitivity"] == 1.0  # p >= t is positive
    assert auroc(ranking(np.array([0.5, 0.5]), np.array([1, 0]))) == 0.5


def test_zero_denominators_are_nan_not_zero():
    m = from_confusion({"tp": 0, "fp": 0, "tn": 5, "fn": 0})
    assert math.isnan(m["sensitivity"]) and math.isnan(m["ppv"]) and m["specificity"] == 1.0
    assert math.isnan(auroc(ranking(np.array([0.1, 0.2]), np.array([0, 0]))))


scored = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 20).map(lambda k: k / 20), min_size=n, max_size=n),
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 3), min_size=n, max_size=n)))


@pytest.mark.requirement("REQ-EVAL-003")
@settings(max_examples=200, deadline=None)
@given(scored)
def test_weighted_auroc_and_ap_match_scikit_learn(data):
    probs, labels, weights = (np.array(x, dtype=float) for x in data)
    weights[0] = max(weights[0], 1)
    positive, negative = (weights * labels).sum(), (weights * (1 - labels)).sum()
    r = ranking(probs, labels)
    if positive > 0 and negative > 0:
        assert auroc(r, weights) == pytest.approx(roc_auc_score(labels, probs, sample_weight=weights))
    if positive > 0:
        assert average_precision(r, weights) == pytest.approx(
            average_precision_score(labels, probs, sample_weight=weights))


@pytest.mark.requirement("REQ-EVAL-001")
@settings(max_examples=200, deadline=None)
@given(scored)
def test_chosen_threshold_has_the_best_validation_f1(data):
    probs, labels, _ = (np.array(x, dtype=float) for x in data)
    if labels.sum() == 0:
        return
    chosen = max_f1_threshold(probs, labels)
    best = all_metrics(probs, labels, chosen)["f1"]
    for t in np.r_[np.unique(probs), 0.0, 1.01, np.linspace(0, 1, 21)]:
        f1 = all_metrics(probs, labels, t)["f1"]
        assert math.isnan(f1) or f1 <= best + 1e-12
        if math.isclose(f1, best) and t > chosen:
            pytest.fail(f"threshold {t} reaches the same F1 but is higher than the chosen {chosen}")


@pytest.mark.requirement("REQ-EVAL-001")
def test_ties_go_to_the_higher_threshold():
    # t=0.8 -> TP 1, FP 0, FN 1: F1 2/3; t=0.6 -> TP 2, FP 2: F1 2/3. Same F1: keep 0.8.
    probs, labels = np.array([0.8, 0.6, 0.6, 0.6, 0.1]), np.array([1, 1, 0, 0, 0])
    assert max_f1_threshold(probs, labels) == 0.8


def test_youden_and_target_sensitivity():
    assert youden_threshold(PROBS, LABELS) == 0.8  # J = 2/3 at 0.8 and at 0.6: the higher wins
    assert sensitivity_threshold(PROBS, LABELS, 0.9) == 0.6
    assert sensitivity_threshold(PROBS, LABELS, 0.5) == 0.8


@pytest.mark.requirement("REQ-EVAL-002")
def test_weights_are_constant_within_a_patient():
    codes = np.repeat(np.arange(10), 4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = patient_weights(codes, 10, rng)
        assert all(len(set(w[codes == p])) == 1 for p in range(10))
        assert w.sum() == 40  # as many patients drawn as there are


@pytest.mark.requirement("REQ-EVAL-002")
def test_bootstrap_resamples_patients_not_images():
    """Ten patients with 40 identical images each: the information is 10 patients, not 400
    images. Resampling images would give a sensitivity interval about 0.1 wide; patients, > 0.3."""
    scores_pos, scores_neg = [0.9, 0.8, 0.7, 0.6, 0.3], [0.5, 0.4, 0.2, 0.1, 0.35]
    probs = np.repeat(scores_pos + scores_neg, 40)
    labels = np.repeat([1] * 5 + [0] * 5, 40)
    patients = np.repeat(np.arange(10), 40)
    ci = bootstrap(probs, labels, patients, 0.55, 1000, seed=0)["sensitivity"]["ci95"]
    assert ci[1] - ci[0] > 0.3
    image_level = bootstrap(probs, labels, np.arange(400), 0.55, 1000, seed=0)["sensitivity"]["ci95"]
    assert image_level[1] - image_level[0] < 0.15  # what the wrong unit would have claimed


@settings(max_examples=30, deadline=None)
@given(scored, st.integers(0, 10_000))
def test_intervals_contain_their_point_estimates(data, seed):
    probs, labels, _ = (np.array(x, dtype=float) for x in data)
    patients = np.arange(len(probs)) // 2
    result = bootstrap(probs, labels, patients, 0.5, 200, seed)
    for name, m in result.items():
        lo, hi = m["ci95"]
        if m["value"] is not None and lo is not None and m["n_undefined"] == 0:
            assert lo - 1e-9 <= m["value"] <= hi + 1e-9, name


def test_bootstrap_is_seeded():
    patients = np.arange(6)
    assert bootstrap(PROBS, LABELS, patients, 0.5, 300, 4) == bootstrap(PROBS, LABELS, patients, 0.5, 300, 4)
