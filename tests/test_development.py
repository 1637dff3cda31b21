"""A device chosen on external development data: the calibration and the threshold are fitted on the
development sets through the device's own path, the decisions are recorded, an ensemble and
test-time views are locked in the bundle and scored the same way everywhere, and no image of a
development set may reach the cohort."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_device.preprocessing import VIEW_SETS, to_stored, to_views
from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.inference import Predictor
from cxr_device.synth import SynthSettings, generate
from fda_submission.pipeline import Pipeline
from fda_submission.run_config import load_run_config
from validation.leakage import LeakageError
from validation.threshold import ThresholdPolicy, accuracy_threshold

CONFIG = """
name: dev
seed: 3
data:
  synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}
  val_fraction: 0.25
  test_fraction: 0.25
eda: {pixel_sample: 0}
train:
  model: {arch: small_cnn}
  image_size: 32
  epochs: 1
  batch_size: 16
  lr: 0.002
  device: cpu
  workers: 0
ensemble: {seeds: [1]}
evaluate: {bootstrap: 100, tta: five_crop, threshold_policy: max_accuracy, threshold_target: 0.8,
           intended_prevalence: 0.2}
development:
  sets:
    - {name: external_dev, metadata: DEV/Data_Entry_SYNTHETIC.csv, images: [DEV], bootstrap: 100}
  selection: {candidates: [a, b], metric: AUROC on external_dev, tie_break: cheaper, chosen: a}
submission: {formats: [md]}
"""


def _quiet(line):
    pass


@pytest.fixture(scope="module")
def development_data(tmp_path_factory):
    """A second synthetic dataset (other seed): the external development set."""
    folder = tmp_path_factory.mktemp("external_dev")
    generate(folder, SynthSettings(n_patients=16, seed=11, image_size=64, prevalence=0.5), progress=False)
    return folder


def _config(tmp_path, dev_folder):
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace("DEV", str(dev_folder)))
    return load_run_config(path)


@pytest.fixture(scope="module")
def dev_run(tmp_path_factory, development_data):
    root = tmp_path_factory.mktemp("dev_run")
    out = root / "run"
    Pipeline(_config(root, development_data), out, progress=False, log=_quiet).run()
    return out


def test_calibration_and_threshold_are_fitted_on_the_development_set_and_recorded(dev_run):
    metrics = json.loads((dev_run / "evaluation" / "metrics.json").read_text())
    assert metrics["calibration"]["fitted_on"] == metrics["threshold"]["chosen_on"] == "external_dev"
    assert "external_dev" in metrics["threshold"]["description"] and "validation split" not in \
        metrics["threshold"]["description"]
    made_on = {d["decision"]: d["made_on"] for d in metrics["decisions"]}
    assert made_on["calibration"] == made_on["threshold"] == "external_dev" and made_on["best epoch"] == "val"
    assert "test" not in made_on.values()  # the internal test split decides nothing
    assert metrics["decision_procedure"]["chosen"] == "a"
    [dev] = metrics["development_sets"]
    assert dev["name"] == "external_dev" and dev["n_scored"] + len(dev["not_scored"]) == dev["n_labelled"]
    assert metrics["transfer"]["locked"] == pytest.approx(metrics["threshold"]["value"])
    prevalence = metrics["calibration"]["prevalence"]
    assert prevalence["adjusted"] and prevalence["intended"] == 0.2
    assert prevalence["offset_shift"] == pytest.approx(np.log(0.2 / 0.8) - np.log(prevalence["fitted"] /
                                                                                   (1 - prevalence["fitted"])))


def test_the_development_set_is_assessed_as_such_and_the_leakage_check_ran(dev_run, development_data):
    document = json.loads((dev_run / "assessment" / "external_dev" / "assessment.json").read_text())
    assert document["development"] is True and "chosen on it" in document["role"]
    transfer = document["operating_point_transfer"]
    assert transfer["locked"] == pytest.approx(document["device"]["threshold"])
    leakage = json.loads((dev_run / "development" / "leakage.json").read_text())
    n_images = len(pd.read_csv(development_data / "Data_Entry_SYNTHETIC.csv"))
    assert leakage["shared_images"] == [] and leakage["n_development_images"] == n_images


def test_the_bundle_locks_every_member_and_the_views_and_scores_their_mean(dev_run):
    bundle = load_bundle(dev_run / "bundle")
    assert len(bundle.models) == 2 and bundle.views == VIEW_SETS["five_crop"]
    assert (dev_run / "bundle" / "model-1.safetensors").is_file()
    assert json.loads((dev_run / "bundle" / "device.json").read_text())["inference"]["members"] == 2
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    views = to_views(to_stored(image, bundle.preprocessing), bundle.preprocessing, bundle.views)
    with torch.no_grad():
        by_hand = np.mean([m(views).numpy().ravel() for m in bundle.models])
    predictor = Predictor(bundle)
    tensor, _ = predictor.prepare_image(image)
    assert predictor.logits(tensor.unsqueeze(0))[0] == pytest.approx(float(by_hand), abs=1e-5)
    # the evaluation computed the same logits through the cache (same preprocessing, same views)
    predictions = pd.read_csv(dev_run / "evaluation" / "predictions.csv")
    assert np.isfinite(predictions["logit"]).all()


def test_an_image_of_the_development_set_in_the_cohort_stops_the_run(tmp_path):
    # the run's own synthetic data, generated again with the same settings, as a "development set":
    # other file names and folders, the same pixels
    leaky = tmp_path / "leaky_dev"
    generate(leaky, SynthSettings(n_patients=40, seed=3, image_size=64, prevalence=0.3), progress=False)
    out = tmp_path / "run"
    with pytest.raises(LeakageError, match="same pixels"):
        Pipeline(_config(tmp_path, leaky), out, progress=False, log=_quiet).run()
    report = json.loads((out / "development" / "leakage.json").read_text())
    assert len(report["shared_images"]) == report["n_development_images"] > 0
    assert not (out / "model").exists()  # stopped before training


def test_max_accuracy_keeps_the_sensitivity_it_is_given():
    probs = np.array([0.1, 0.2, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 1, 0, 1, 0, 1, 1])
    # by hand: thresholds 0.9..0.1; sensitivity >= 0.75 needs 3 of 4 positives: t <= 0.6; among those,
    # t = 0.6 flags 0.6, 0.7, 0.8, 0.9: TP 3, FP 1 -> accuracy 6/8; t = 0.35: TP 4, FP 2 -> 6/8: tie -> higher
    assert accuracy_threshold(probs, labels, 0.75) == 0.6
    assert ThresholdPolicy("max_accuracy", 0.75).choose(probs, labels) == 0.6
    assert accuracy_threshold(probs, labels, 1.0) == 0.35
