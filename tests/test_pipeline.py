"""cxr-device run: every artifact and the manifest, skipping, --from, config validation, resume."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cxr_device.cli import main
from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file
from fda_submission.pipeline import RESUMED, SKIPPED, Pipeline
from fda_submission.run_config import load_run_config

CONFIG = """
name: tiny
seed: 3
data:
  synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}
  val_fraction: 0.25
  test_fraction: 0.25
eda: {pixel_sample: 5}
train:
  model: {arch: small_cnn}
  image_size: 32
  epochs: EPOCHS
  batch_size: 16
  lr: 0.002
  device: cpu
  workers: 0
evaluate: {bootstrap: 100}
submission: {formats: [md, html]}
"""
ARTIFACTS = ["data/Data_Entry_SYNTHETIC.csv", "data/synthetic.json", "cohort/cohort.csv", "cohort/summary.json",
             "cohort/exclusions.csv", "eda/eda.json", "eda/age_by_class.png", "model/best.pt", "model/last.pt",
             "model/history.csv", "model/config.yaml", "model/layers.json", "model/training_curves.png",
             "evaluation/predictions.csv", "evaluation/metrics.json", "evaluation/roc.png",
             "bundle/model.safetensors", "bundle/device.json", "bundle/input_rules.yaml",
             "submission/algorithm_description.md", "submission/validation_plan.html", "manifest.json"]


def _config(tmp_path, epochs=2, **replace):
    text = CONFIG.replace("EPOCHS", str(epochs))
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return load_run_config(path)


def _quiet(line):
    pass


def test_every_artifact_and_the_manifest(tmp_path):
    out = tmp_path / "run"
    manifest = Pipeline(_config(tmp_path), out, progress=False, log=_quiet).run()
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["steps"].keys() == manifest["steps"].keys() == {"synth", "cohort", "eda", "train", "evaluate",
                                                                   "submission"}
    for step in on_disk["steps"].values():
        assert step["complete"] and step["status"] == "ran" and step["seconds"] >= 0
        assert step["left_out"] == 0 and step["foreign"] == {}  # nothing left out, nobody else's files
        for rel, digest in step["outputs"].items():
            assert sha256_file(out / rel) == digest
    assert on_disk["steps"]["train"]["inputs"] == {"cohort/cohort.csv": sha256_file(out / "cohort" / "cohort.csv")}
    assert on_disk["seeds"]["cohort"] == on_disk["seeds"]["train"] == 3
    assert on_disk["package_version"] and on_disk["python"] and on_disk["torch"] and "gpu" in on_disk
    assert any(d["name"] == "torch" for d in on_disk["soup"])
    assert on_disk["config_sha256"] == sha256_file(tmp_path / "run.yaml")


def test_rerun_skips_and_from_reruns_the_tail(tmp_path):
    out = tmp_path / "run"
    config = _config(tmp_path)
    Pipeline(config, out, progress=False, log=_quiet).run()
    bundle = sha256_file(out / "bundle" / "model.safetensors")
    again = Pipeline(config, out, progress=False, log=_quiet).run()
    assert {s["status"] for s in again["steps"].values()} == {SKIPPED}
    moved = shutil.copytree(out, tmp_path / "moved")  # a run folder copied elsewhere is still up to date
    assert {s["status"] for s in Pipeline(config, moved, progress=False, log=_quiet).run()["steps"].values()} == {SKIPPED}
    tail = Pipeline(config, out, progress=False, log=_quiet).run(from_step="evaluate")
    assert [k for k, s in tail["steps"].items() if s["status"] == "ran"] == ["evaluate", "submission"]
    assert sha256_file(out / "bundle" / "model.safetensors") == bundle  # same model, same bytes
    (out / "eda" / "eda.json").write_text("{}")  # a damaged output is not "up to date"
    repaired = Pipeline(config, out, progress=False, log=_quiet).run()
    assert repaired["steps"]["eda"]["status"] == "ran" and repaired["steps"]["train"]["status"] == SKIPPED


def test_a_killed_training_resumes_to_the_same_result(tmp_path, kill_training):
    full_out = tmp_path / "full"
    Pipeline(_config(tmp_path, epochs=3), full_out, progress=False, log=_quiet).run()
    out = tmp_path / "cut"
    arm, disarm = kill_training
    arm(2)  # killed during the second epoch
    with pytest.raises(KeyboardInterrupt):
        Pipeline(_config(tmp_path, epochs=3), out, progress=False, log=_quiet).run()
    interrupted = json.loads((out / "manifest.json").read_text())
    assert interrupted["steps"]["train"]["complete"] is False and "evaluate" not in interrupted["steps"]
    disarm()
    resumed = Pipeline(_config(tmp_path, epochs=3), out, progress=False, log=_quiet).run()
    assert resumed["steps"]["train"]["status"] == RESUMED
    assert resumed["steps"]["cohort"]["status"] == SKIPPED
    cols = ["epoch", "train_loss", "val_loss", "val_auroc"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "model" / "history.csv")[cols],
                                  pd.read_csv(full_out / "model" / "history.csv")[cols])


@pytest.mark.parametrize("change, words", [
    (("name: tiny", "name: tiny\ncolour: red"), "unknown key(s) colour"),
    (("eda: {pixel_sample: 5}", "eda: {pixels: 5}"), "eda: unknown key(s) pixels; allowed: pixel_sample, seed"),
    (("val_fraction: 0.25", "val_fracton: 0.25"), "data: unknown key(s) val_fracton"),
    (("arch: small_cnn", "arch: alexnet"), "unknown architecture 'alexnet'"),
    (("batch_size: 16", "batch_sise: 16"), "train: unknown key(s) batch_sise"),
    (("n_patients: 40", "n_patients: 0"), "data.synthetic.n_patients: Input should be greater than or equal to 1; "
                                          "allowed: from 1 to 100,000 (got 0)"),
])
def test_config_errors_name_the_key_and_the_allowed_values(tmp_path, change, words):
    with pytest.raises(CxrDeviceError) as err:
        _config(tmp_path, **{change[0]: change[1]})
    assert words in str(err.value) and "run.yaml" in str(err.value)


def test_cli_run_and_shipped_configs_load(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace("EPOCHS", "1"))
    # synthetic phantoms, no external assessment: the documents are drafts, and the exit code says so
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 1
    first = capsys.readouterr()
    assert "submission ran" in first.out and "the documents are drafts" in first.err
    assert "[no-standalone-evidence]" in first.err
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 1
    again = capsys.readouterr()
    assert "submission skipped" in again.out and "[no-standalone-evidence]" in again.err
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    shipped = sorted(configs.glob("*.yaml"))
    assert {p.name for p in shipped} >= {"demo.yaml", "nih_densenet121.yaml", "nih_vgg16.yaml",
                                         "pediatric_densenet121.yaml"}
    for path in shipped:  # every shipped configuration is valid (its data are checked when a step runs)
        assert load_run_config(path).name == path.stem
    for path in sorted((configs / "ablation").glob("*.yaml")):
        assert load_run_config(path).name == "ablation_" + path.stem
