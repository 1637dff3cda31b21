"""Never lose or invent data: `run`/`demo` never delete what they did not write, and every image
that cannot be decoded is counted, listed with its split and reason, in the documents, and in the
exit code (1) of `train`, `evaluate`, `run`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_device.cli import main
from cxr_device.cohort import build_cohort
from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file
from fda_submission.pipeline import RAN, SKIPPED, Pipeline
from fda_submission.run_config import load_run_config

CONFIG = """
name: tiny
seed: 3
data:
  DATA
  val_fraction: 0.25
  test_fraction: 0.25
eda: {pixel_sample: PIXELS}
train:
  model: {arch: small_cnn}
  image_size: 32
  epochs: EPOCHS
  batch_size: 16
  lr: 0.002
  device: cpu
  workers: 0
evaluate: {bootstrap: 100}
submission: {formats: [md]}
"""
SYNTHETIC = "synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}"


def _config_file(tmp_path, data=SYNTHETIC, epochs=1, pixels=5):
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace("DATA", data).replace("EPOCHS", str(epochs)).replace("PIXELS", str(pixels)))
    return path


def _quiet(line):
    pass


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the run folder ----------------------------------------------------------------------------
@pytest.mark.requirement("REQ-RUN-001")
@pytest.mark.parametrize("manifest, words", [
    (None, "it has no manifest.json"),
    ('{"run": "someone-else", "steps": {}}', "its manifest.json is of run 'someone-else'"),
    ("{not json", "its manifest.json cannot be read"),
])
def test_a_folder_that_is_not_a_run_of_this_config_is_refused_untouched(tmp_path, capsys, manifest, words):
    out = tmp_path / "thesis"
    for rel in ("data/raw.png", "model/best.pt", "submission/draft.md", "bundle/mine.txt", "notes.txt"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(f"precious {rel}")
    if manifest is not None:
        (out / "manifest.json").write_text(manifest)
    before = _snapshot(out)
    config = _config_file(tmp_path)
    with pytest.raises(CxrDeviceError) as err:
        Pipeline(load_run_config(config), out, progress=False, log=_quiet).run()
    message = str(err.value)
    assert str(out) in message and words in message and "--force" in message and "nothing was changed" in message
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    assert words in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--quiet"]) == 2  # the demo goes through the same check
    assert "is not a run of 'demo'" in capsys.readouterr().err
    assert _snapshot(out) == before  # not one byte changed, nothing added


@pytest.mark.requirement("REQ-RUN-001")
def test_reruns_remove_only_the_files_the_run_recorded(tmp_path):
    out = tmp_path / "run"
    foreign = {"notes.txt": "mine", "model/my_notes.txt": "mine too", "submission/reviewer_edits.md": "keep",
               "eda/sketch.png": "not a figure of the run", "data/README.txt": "about my data"}
    for rel, text in foreign.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    config = load_run_config(_config_file(tmp_path))
    manifest = Pipeline(config, out, progress=False, log=_quiet).run(force=True)  # --force: allowed, kept
    for step in manifest["steps"].values():
        assert not set(step["outputs"]) & set(foreign), "a file the run did not write is not its output"
    assert manifest["steps"]["train"]["foreign"] == {"model/my_notes.txt": sha256_file(out / "model/my_notes.txt")}

    # an output an earlier run recorded, and a tampered record pointing outside the step's folder
    on_disk = json.loads((out / "manifest.json").read_text())
    (out / "submission" / "old_appendix.md").write_text("written by an earlier run")
    outputs = on_disk["steps"]["submission"]["outputs"]
    outputs["submission/old_appendix.md"] = sha256_file(out / "submission" / "old_appendix.md")
    outputs["submission/../notes.txt"] = sha256_file(out / "notes.txt")
    (out / "manifest.json").write_text(json.dumps(on_disk))

    again = Pipeline(config, out, progress=False, log=_quiet).run(from_step="train")
    assert [k for k, s in again["steps"].items() if s["status"] == RAN] == ["train", "evaluate", "submission"]
    assert not (out / "submission" / "old_appendix.md").exists()  # recorded as the run's: removed
    for rel, text in foreign.items():
        assert (out / rel).read_text() == text, rel
    for step in again["steps"].values():
        for rel, digest in step["outputs"].items():
            assert sha256_file(out / rel) == digest
    assert Pipeline(config, out, progress=False, log=_quiet).run()["steps"]["submission"]["status"] == SKIPPED


def test_an_interrupted_training_with_new_settings_starts_over_and_keeps_other_files(tmp_path, kill_training):
    out = tmp_path / "run"
    arm, disarm = kill_training
    arm(2)  # killed during the second epoch: last.pt of the first is on disk
    with pytest.raises(KeyboardInterrupt):
        Pipeline(load_run_config(_config_file(tmp_path, epochs=2)), out, progress=False, log=_quiet).run()
    disarm()
    interrupted = json.loads((out / "manifest.json").read_text())["steps"]["train"]
    assert interrupted["complete"] is False and "model/last.pt" in interrupted["outputs"]
    (out / "model" / "my_notes.txt").write_text("mine")
    manifest = Pipeline(load_run_config(_config_file(tmp_path, epochs=3)), out, progress=False, log=_quiet).run()
    assert manifest["steps"]["train"]["status"] == RAN  # settings changed: not resumed, started over
    assert len(pd.read_csv(out / "model" / "history.csv")) == 3
    assert (out / "model" / "my_notes.txt").read_text() == "mine"


# --- images that cannot be decoded -------------------------------------------------------------
@pytest.mark.requirement("REQ-DATA-001")
def test_undecodable_and_blank_images_are_counted_listed_documented_and_exit_1(tmp_path, capsys):
    from cxr_device.synth import SynthSettings, generate

    csv_path = generate(tmp_path / "data", SynthSettings(n_patients=40, seed=3, image_size=64, prevalence=0.3),
                        progress=False)
    config_path = _config_file(tmp_path, data=f"metadata: {csv_path}\n  images: [{tmp_path / 'data'}]", epochs=2,
                               pixels=0)
    config = load_run_config(config_path)
    split = build_cohort(config.cohort).frame.set_index("image_id")["split"]  # the split the run will make
    paths = build_cohort(config.cohort).frame.set_index("image_id")["path"]
    garbage, blank = split[split == "train"].index[0], split[split == "test"].index[0]
    with open(paths[garbage], "r+b") as handle:  # a damaged file: the header survives, the data do not
        handle.seek(40)
        handle.write(b"\x00garbage" * 20)
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(paths[blank])  # decodes, but one value: refused

    out = tmp_path / "run"
    assert main(["run", str(config_path), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"train      1 image(s) could not be decoded and were left out of training: listed in " \
           f"{out / 'model' / 'train_summary.json'}" in err
    assert f"evaluate   1 image(s) could not be decoded and were not scored: listed in " \
           f"{out / 'evaluation' / 'metrics.json'}" in err

    steps = json.loads((out / "manifest.json").read_text())["steps"]
    assert {k: s["left_out"] for k, s in steps.items()} == {"cohort": 0, "eda": 0, "train": 1, "evaluate": 1,
                                                           "submission": 0}
    assert steps["train"]["left_out_listed_in"] == "model/train_summary.json"

    summary = json.loads((out / "model" / "train_summary.json").read_text())
    assert summary["left_out"]["n"] == 1 and summary["left_out"]["by_split"] == {"train": 1, "val": 0}
    (image,) = summary["left_out"]["images"]
    assert image["image_id"] == garbage and image["split"] == "train" and "not a readable image" in image["reason"]
    assert {(u["image_id"], u["split"]) for u in summary["cache"]["unreadable"]} == {(garbage, "train"),
                                                                                     (blank, "test")}

    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["left_out"]["n"] == 1 and metrics["left_out"]["by_split"] == {"val": 0, "test": 1}
    (image,) = metrics["left_out"]["images"]
    assert image["image_id"] == blank and image["split"] == "test" and "same value" in image["reason"]
    cohort = pd.read_csv(out / "cohort" / "cohort.csv")
    assert metrics["splits"]["test"]["n_images"] == (cohort["split"] == "test").sum() - 1
    assert metrics["splits"]["test"]["n_left_out"] == 1 and metrics["splits"]["val"]["n_left_out"] == 0
    predictions = pd.read_csv(out / "evaluation" / "predictions.csv")
    assert blank not in set(predictions["image_id"])
    assert len(predictions) + 1 == cohort["split"].isin(["val", "test"]).sum()  # scored + left out = all

    document = (out / "submission" / "algorithm_description.md").read_text()
    assert "after 0 exclusions" not in document
    assert "2 image(s) of the cohort could not be decoded and were left out of training and evaluation: " \
           "training 1, validation 0, test 1" in document
    assert f"| {garbage} | train |" in document and f"| {blank} | test |" in document
    assert "| images not scored: could not be decoded | 0 | 1 |" in document
    assert "2 image(s) of the development data could not be decoded" in document  # a limitation
    plan = (out / "submission" / "validation_plan.md").read_text()
    assert "1 test image(s) could not be decoded and were not scored" in plan

    # the run is still incomplete when nothing needs re-running: same exit code, same listing
    assert main(["run", str(config_path), "--out", str(out), "--quiet"]) == 1
    assert "skipped" in capsys.readouterr().out

    # the step commands say the same
    assert main(["evaluate", "--run", str(out), "--bootstrap", "100", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{blank} (test):" in err and "same value" in err and "metrics.json" in err
    assert main(["train", "--cohort", str(out / "cohort"), "--out", str(tmp_path / "other"), "--arch", "small_cnn",
                 "--image-size", "32", "--epochs", "1", "--device", "cpu", "--workers", "0", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "2 image(s) could not be decoded (train 1, val 0, test 1)" in err and f"{garbage} (train):" in err


def test_split_datasets_and_metrics_list_what_is_left_out_even_when_nothing_is(trained_run):
    """split_datasets reports what it leaves out; on a clean run it is nothing, for every split."""
    from cxr_device.training import load_trained, split_datasets

    _, config, meta = load_trained(trained_run)
    data = split_datasets(meta["cohort"]["dir"], config, ("train", "val", "test"))
    cohort = pd.read_csv(trained_run / "cohort" / "cohort.csv")
    for split, part in data.items():
        assert part.left_out.empty and list(part.left_out.columns) == ["image_id", "split", "reason"]
        assert len(part.rows) == (cohort["split"] == split).sum() == len(part.dataset)
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    assert metrics["left_out"] == {"n": 0, "by_split": {"val": 0, "test": 0}, "images": []}


@pytest.mark.requirement("REQ-RUN-001")
def test_locking_a_bundle_refuses_a_folder_that_is_not_one_and_replaces_a_previous_lock(trained_run, tmp_path):
    import shutil

    import torch

    from cxr_device.runtime.bundle import BundleError, load_bundle, write_bundle
    from cxr_device.runtime.input_rules import default_rules_path

    bundle = load_bundle(trained_run / "bundle")
    args = (bundle.model, bundle.preprocessing, {"value": 0.5, "rule": "max_f1"}, default_rules_path(),
            trained_run / "cohort" / "cohort.csv")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "device.json").write_text('{"my": "notes"}')  # a bundle file name, but not a bundle this tool locked
    with pytest.raises(BundleError, match="nothing was changed"):
        write_bundle(mine, *args)
    assert (mine / "device.json").read_text() == '{"my": "notes"}'
    relocked = shutil.copytree(trained_run / "bundle", tmp_path / "bundle")
    (relocked / "signature.json").write_text("{}")  # a previous lock's signature no longer matches: removed
    write_bundle(relocked, *args)
    assert not (relocked / "signature.json").exists() and load_bundle(relocked).threshold == 0.5
    assert torch.equal(next(iter(load_bundle(relocked).model.state_dict().values())),
                       next(iter(bundle.model.state_dict().values())))


def test_the_orphan_list_is_rewritten_never_deleted(synth_dataset, tmp_path):
    from cxr_device.cohort import CohortSettings, write_cohort

    csv_path, root = synth_dataset
    extra = root / "images_001" / "images" / "99999999_000.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(extra)
    try:
        settings = CohortSettings(metadata=str(csv_path), images=(str(root),), seed=1)
        out = write_cohort(build_cohort(settings), tmp_path / "cohort")
        assert (out / "images_without_row.txt").read_text().strip().endswith("99999999_000.png")
    finally:
        extra.unlink()
    write_cohort(build_cohort(settings), out)
    assert (out / "images_without_row.txt").read_text() == ""
