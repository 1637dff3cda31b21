"""evaluate end to end: metrics.json contract, figures, locked threshold independent of test labels."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from scipy import stats

from cxr_device.errors import CxrDeviceError
from validation.evaluation import evaluate_run
from validation.figures import FIGURES
from validation.intervals import delong


def test_metrics_predictions_figures(trained_run):
    out = trained_run / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    cohort = pd.read_csv(trained_run / "cohort" / "cohort.csv")
    assert len(predictions) == cohort["split"].isin(["val", "test"]).sum()
    assert list(predictions.columns) == ["image_id", "patient_id", "logit", "probability", "label", "split",
                                         "age_years", "sex", "view"]
    assert predictions["probability"].between(0, 1).all()
    for split in ("val", "test"):
        s = metrics["splits"][split]
        for name in ("average_precision", "f1", "brier"):
            assert set(s[name]) == {"value", "ci95", "n_undefined"}
        for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
            assert set(s[name]) == {"value", "ci95", "n_undefined", "k", "n", "clopper_pearson"}
        assert set(s["auroc"]) == {"value", "ci95", "n_undefined", "delong", "interval"}
        assert sum(s["confusion"].values()) == s["n_images"]
        assert s["n_left_out"] == 0
    assert metrics["left_out"] == {"n": 0, "by_split": {"val": 0, "test": 0}, "images": []}
    rules = [p["rule"] for p in metrics["operating_points"]]
    assert rules == ["max_f1", "youden", "target_sensitivity>=0.9", "f1_plateau(0.01)"]
    assert [p["locked"] for p in metrics["operating_points"]] == [True, False, False, False]
    assert metrics["bootstrap"]["unit"] == "patient" and metrics["synthetic"] is True
    groups = {(r["group"], r["level"]) for r in metrics["subgroups"]["test"]}
    assert ("sex", "M") in groups and all(isinstance(r["unstable"], bool) for r in metrics["subgroups"]["test"])
    assert set(metrics["figures"]) == set(FIGURES)
    for name in FIGURES.values():
        assert (out / name).stat().st_size > 5_000


@pytest.mark.requirement("REQ-EVAL-003")
def test_internal_metrics_carry_exact_intervals_from_their_counts(trained_run):
    """Planning values can be exact lower bounds: splits.SPLIT.METRIC.clopper_pearson with k and n
    from the confusion counts, and splits.SPLIT.auroc.delong from the split's scores."""
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    predictions = pd.read_csv(trained_run / "evaluation" / "predictions.csv")
    for split in ("val", "test"):
        s, c = metrics["splits"][split], metrics["splits"][split]["confusion"]
        counts = {"sensitivity": (c["tp"], c["tp"] + c["fn"]), "specificity": (c["tn"], c["tn"] + c["fp"]),
                  "ppv": (c["tp"], c["tp"] + c["fp"]), "npv": (c["tn"], c["tn"] + c["fn"]),
                  "accuracy": (c["tp"] + c["tn"], s["n_images"])}
        for name, (k, n) in counts.items():
            assert (s[name]["k"], s[name]["n"]) == (k, n)
            assert s[name]["value"] == pytest.approx(k / n)
            exact = stats.binomtest(k, n).proportion_ci(method="exact")
            assert s[name]["clopper_pearson"] == pytest.approx([exact.low, exact.high], abs=1e-12)
        part = predictions[predictions["split"] == split]
        reference = delong(part["probability"].to_numpy(), part["label"].to_numpy())
        assert s["auroc"]["delong"]["ci95"] == pytest.approx(reference["ci95"], abs=1e-12)
        assert s["auroc"]["delong"]["variance"] == pytest.approx(reference["se"] ** 2, rel=1e-12)
        assert s["auroc"]["interval"]["method"] in ("DeLong", "Newcombe (2006) score interval (DeLong degenerate)")
        assert s["auroc"]["interval"]["ci95"][1] - s["auroc"]["interval"]["ci95"][0] > 0


@pytest.mark.requirement("REQ-EVAL-001")
def test_threshold_never_depends_on_test_labels(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary = json.loads((run / "model" / "train_summary.json").read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    (run / "model" / "train_summary.json").write_text(json.dumps(summary))
    before = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    cohort = pd.read_csv(run / "cohort" / "cohort.csv")
    test = cohort["split"] == "test"
    cohort.loc[test, "pneumonia"] = 1 - cohort.loc[test, "pneumonia"]  # every test label flipped
    cohort.to_csv(run / "cohort" / "cohort.csv", index=False)
    after = evaluate_run(run, n_bootstrap=200, progress=False)
    assert after["threshold"]["value"] == before["threshold"]["value"]
    assert after["splits"]["val"]["f1"]["value"] == before["splits"]["val"]["f1"]["value"]
    assert after["splits"]["test"]["auroc"]["value"] == pytest.approx(1 - before["splits"]["test"]["auroc"]["value"])


def test_missing_model_names_the_file_and_the_command(tmp_path):
    with pytest.raises(CxrDeviceError, match="best.pt: not found; train first"):
        evaluate_run(tmp_path, progress=False)


@pytest.mark.requirement("REQ-EVAL-001")
def test_calibration_is_fitted_on_validation_locked_in_the_bundle_and_applied_by_predict(trained_run):
    import numpy as np

    from cxr_device.runtime.bundle import load_bundle
    from validation.calibration import sigmoid

    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    calibration = metrics["calibration"]
    assert calibration["method"] == "platt" and calibration["fitted_on"] == "val"
    assert calibration["val"]["after"]["nll"] <= calibration["val"]["before"]["nll"] + 1e-12  # fitted to lower it
    predictions = pd.read_csv(trained_run / "evaluation" / "predictions.csv")
    expected = sigmoid(calibration["slope"] * predictions["logit"].to_numpy() + calibration["offset"])
    assert np.allclose(predictions["probability"], expected, atol=1e-12)
    bundle = load_bundle(trained_run / "bundle")
    assert (bundle.calibration.slope, bundle.calibration.offset) == (calibration["slope"], calibration["offset"])
    t = metrics["threshold"]
    assert t["rule"] == "max_f1" and t["scale"] == "calibrated probability" and bundle.threshold == t["value"]
    assert t["raw_threshold"] == pytest.approx(float(sigmoid(np.array([(np.log(t["value"] / (1 - t["value"]))
                                                                        - calibration["offset"])
                                                                       / calibration["slope"]]))[0]))


def test_the_threshold_policy_is_a_setting_recorded_in_the_bundle(trained_run, tmp_path):
    from cxr_device.runtime.bundle import load_bundle
    from validation.threshold import TARGET_SPECIFICITY, ThresholdPolicy

    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary = json.loads((run / "model" / "train_summary.json").read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    (run / "model" / "train_summary.json").write_text(json.dumps(summary))
    metrics = evaluate_run(run, n_bootstrap=100, progress=False, calibration="none",
                           policy=ThresholdPolicy(TARGET_SPECIFICITY, 0.8))
    assert metrics["threshold"]["rule"] == "target_specificity>=0.8"
    assert metrics["operating_points"][0]["locked"] and metrics["operating_points"][0]["rule"] == "target_specificity>=0.8"
    val = metrics["operating_points"][0]["val"]
    assert val["specificity"] >= 0.8
    bundle = load_bundle(run / "bundle")
    assert bundle.meta["threshold"]["policy"] == {"rule": TARGET_SPECIFICITY, "target": 0.8, "tolerance": 0.01}
    assert bundle.calibration.method == "none" and bundle.threshold == metrics["threshold"]["value"]
