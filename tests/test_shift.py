"""The shift report: internal test split against an external set, with both samples' uncertainty."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from validation.intervals import delong, proportion
from validation.shift import (
    DIFFERS,
    MIN_EXTERNAL_PER_CLASS,
    NO_EVIDENCE,
    NOT_ENOUGH,
    compare_metrics,
    shift_warning,
)
from validation.two_sample import newcombe_difference

COMPARED_VALUES = ("ppv", "npv", "f1", "accuracy", "brier")


def _internal(tp: int, fn: int, tn: int, fp: int, predictions: pd.DataFrame) -> dict:
    """An internal test split as metrics.json holds it (bootstrap intervals made up: never tested)."""
    auroc = delong(predictions["probability"].to_numpy(), predictions["label"].to_numpy())["value"]
    split = {"n_images": tp + fn + tn + fp, "n_positive": tp + fn,
             "confusion": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
             "auroc": {"value": auroc, "ci95": [auroc - 0.05, min(1.0, auroc + 0.05)]},
             "sensitivity": {"value": tp / (tp + fn), "ci95": [0.85, 0.95]},
             "specificity": {"value": tn / (tn + fp), "ci95": [0.75, 0.85]}}
    split.update({name: {"value": 0.5, "ci95": [0.4, 0.6]} for name in COMPARED_VALUES})
    return split


def _external(tp: int, fn: int, tn: int, fp: int, auroc: float, se: float) -> dict:
    ext = {"n_images": tp + fn + tn + fp, "n_positive": tp + fn,
           "auroc": {"value": auroc, "delong": {"value": auroc, "se": se, "ci95": [auroc - 2 * se, auroc + 2 * se]}},
           "sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp)}
    ext.update({name: {"value": 0.5} for name in COMPARED_VALUES})
    return ext


@pytest.fixture
def internal_predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(100), np.zeros(200)]
    return pd.DataFrame({"probability": 1 / (1 + np.exp(-rng.normal(2.5 * labels - 1.2, 1.0))), "label": labels})


@pytest.mark.requirement("REQ-ASSESS-001")
def test_eight_external_images_are_not_enough_data_and_raise_no_warning(internal_predictions):
    """Internally 90/100 positives found; externally 0 of 4. The old report warned (0 lies outside the
    internal interval); with 4 positives and 4 negatives there is no verdict to give."""
    test = _internal(90, 10, 160, 40, internal_predictions)
    rows = {r["metric"]: r for r in compare_metrics(test, internal_predictions, _external(0, 4, 1, 3, 0.3, 0.2))}
    assert rows["sensitivity"]["covered"] is False  # the descriptive comparison the old warning fired on
    for name in ("auroc", "sensitivity", "specificity"):
        assert rows[name]["test"]["verdict"] == NOT_ENOUGH
        assert f"at least {MIN_EXTERNAL_PER_CLASS}" in rows[name]["test"]["note"]
    assert rows["sensitivity"]["test"]["p_value"] == pytest.approx(
        stats.fisher_exact([[90, 10], [0, 4]]).pvalue)  # still computed and reported
    assert all(rows[name]["test"] is None for name in COMPARED_VALUES)
    assert shift_warning(list(rows.values())) is None


@pytest.mark.requirement("REQ-ASSESS-001")
def test_a_real_drop_in_sensitivity_differs_and_the_warning_says_by_how_much(internal_predictions):
    test = _internal(90, 10, 160, 40, internal_predictions)
    external = _external(20, 20, 48, 12, 0.80, 0.04)  # sensitivity 20/40 = 0.5; specificity 48/60 = 0.8
    rows = {r["metric"]: r for r in compare_metrics(test, internal_predictions, external)}
    sens, spec = rows["sensitivity"]["test"], rows["specificity"]["test"]
    # difference external - internal: 0.5 - 0.9 = -0.4; specificity 0.8 - 0.8 = 0
    assert sens["difference"] == pytest.approx(-0.4) and spec["difference"] == pytest.approx(0.0)
    assert sens["p_value"] == pytest.approx(stats.fisher_exact([[90, 10], [20, 20]]).pvalue, rel=1e-12)
    assert sens["p_value"] < 1e-5 and sens["verdict"] == DIFFERS
    assert sens["ci95"] == pytest.approx(list(newcombe_difference(90, 100, 20, 40)))
    assert sens["ci95"][1] < 0 and "Newcombe (1998) method 10" in sens["method"]
    assert spec["p_value"] == pytest.approx(1.0) and spec["verdict"] == NO_EVIDENCE
    warning = shift_warning(list(rows.values()))
    assert "sensitivity 0.500 against 0.900" in warning and "difference -0.400" in warning
    assert "operating point moved" in warning and "specificity" not in warning


def test_auroc_is_tested_with_both_delong_variances(internal_predictions):
    test = _internal(90, 10, 160, 40, internal_predictions)
    internal = delong(internal_predictions["probability"].to_numpy(), internal_predictions["label"].to_numpy())
    assert internal["se"] == pytest.approx(0.008473, abs=1e-6)  # internal AUROC 0.97125
    external = _external(30, 10, 50, 10, internal["value"] - 0.10, 0.04)
    row = next(r for r in compare_metrics(test, internal_predictions, external) if r["metric"] == "auroc")
    se = np.hypot(internal["se"], 0.04)  # sqrt(0.008473^2 + 0.04^2) = 0.040888; z = -0.10 / 0.040888 = -2.4457
    assert se == pytest.approx(0.040888, abs=1e-6)
    assert row["test"]["difference"] == pytest.approx(-0.10)
    assert row["test"]["p_value"] == pytest.approx(2 * stats.norm.sf(0.10 / se), rel=1e-9)  # 0.01446
    assert row["test"]["p_value"] == pytest.approx(0.01446, abs=5e-5) and row["test"]["verdict"] == DIFFERS
    assert row["test"]["ci95"] == pytest.approx([-0.10 - 1.959964 * se, -0.10 + 1.959964 * se], abs=1e-6)
    assert "discriminates differently" in shift_warning(compare_metrics(test, internal_predictions, external))
    wider = _external(30, 10, 50, 10, internal["value"] - 0.10, 0.06)  # se 0.060595, z = -1.650: p = 0.0989
    row_wide = next(r for r in compare_metrics(test, internal_predictions, wider) if r["metric"] == "auroc")
    assert row_wide["test"]["p_value"] == pytest.approx(0.0989, abs=5e-4)
    assert row_wide["test"]["verdict"] == NO_EVIDENCE
    # without the internal scores, newer metrics.json carries the variance itself
    test["auroc"]["delong"] = {"variance": internal["se"] ** 2}
    again = next(r for r in compare_metrics(test, None, external) if r["metric"] == "auroc")
    assert again["test"]["p_value"] == pytest.approx(row["test"]["p_value"], rel=1e-9)
    del test["auroc"]["delong"]
    missing = next(r for r in compare_metrics(test, None, external) if r["metric"] == "auroc")
    assert missing["test"]["verdict"] == NOT_ENOUGH and "not available" in missing["test"]["note"]
