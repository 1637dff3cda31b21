"""cxr-device assess: the locked device on a labelled set, through the predict path, nothing vanishing."""
from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from cxr_device.cli import main
from cxr_device.errors import CxrDeviceError
from cxr_device.runtime.bundle import load_bundle
from validation.assessment import (
    ASSESSMENT,
    PREDICTIONS,
    assess,
    judge,
    left_out,
    standalone_metrics,
)
from validation.assessment_inputs import (
    DUPLICATE_LABEL,
    FILE_WITHOUT_LABEL,
    INVALID_LABEL,
    LABEL_WITHOUT_FILE,
    from_cohort,
    from_dicom_labels,
)

from .conftest import pydicom_test_file


@pytest.fixture(scope="module")
def bundle(trained_run):
    return load_bundle(trained_run / "bundle")


@pytest.mark.requirement("REQ-EVAL-003", "REQ-ASSESS-001")
def test_assessing_the_cohort_test_split_equals_evaluate(trained_run, bundle, tmp_path):
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    document = assess(bundle, from_cohort(trained_run / "cohort", "test"), tmp_path, "internal", n_bootstrap=200)
    internal, external = metrics["splits"]["test"], document["accepted"]
    assert external["n_images"] == internal["n_images"] and external["confusion"] == internal["confusion"]
    for name in ("auroc", "sensitivity", "specificity", "f1", "accuracy", "brier"):
        assert external[name]["value"] == pytest.approx(internal[name]["value"], abs=1e-9), name
        assert external[name]["bootstrap_ci95"] == pytest.approx(internal[name]["ci95"], abs=1e-9), name
    rows = {r["metric"]: r for r in document["shift"]["metrics"]}
    assert rows["auroc"]["difference"] == pytest.approx(0.0, abs=1e-9) and rows["auroc"]["covered"] is True
    for name in ("auroc", "sensitivity", "specificity"):  # the same cases on both sides: nothing differs
        assert rows[name]["test"]["difference"] == pytest.approx(0.0, abs=1e-9)
        assert rows[name]["test"]["p_value"] == pytest.approx(1.0) and rows[name]["test"]["verdict"] != "differs"
    assert document["shift"]["tests"]["minimum_external_per_class"] == 10
    assert document["shift"]["operating_point_moved"] is False and document["shift"]["warning"] is None
    frame = pd.read_csv(tmp_path / PREDICTIONS)
    assert len(frame) == internal["n_images"] and set(frame["status"]) == {"accepted"}
    assert {"roc", "pr", "reliability", "confusion", "score_shift"} <= set(document["figures"])
    assert all((tmp_path / name).is_file() for name in document["figures"].values())
    assert document["device"]["device_json_sha256"] == bundle.device_sha256


@pytest.mark.requirement("REQ-ASSESS-001")
def test_acceptance_is_judged_on_the_lower_bounds(bundle, trained_run, tmp_path):
    document = assess(bundle, from_cohort(trained_run / "cohort", "test"), tmp_path, "t", n_bootstrap=100,
                      acceptance={"auroc": 0.01, "sensitivity": 0.999}, intended_prevalence=0.3)
    criteria = document["acceptance"]["criteria"]
    auroc = document["accepted"]["auroc"]
    assert auroc["interval"]["method"] == "DeLong" and auroc["interval"]["ci95"] == auroc["delong"]["ci95"]
    assert criteria["auroc"]["passed"] is True and criteria["auroc"]["method"] == "DeLong"
    assert criteria["auroc"]["note"] is None and criteria["auroc"]["lower_bound"] == auroc["delong"]["ci95"][0]
    assert criteria["sensitivity"]["passed"] is False and document["acceptance"]["passed"] is False
    assert criteria["sensitivity"]["lower_bound"] == document["accepted"]["sensitivity"]["clopper_pearson"][0]
    at = document["predictive_values_at_intended_prevalence"]
    assert at["prevalence"] == 0.3 and {"ppv", "npv", "ppv_ci95", "npv_ci95", "method"} <= set(at)
    for key in ("ppv", "npv"):
        assert 0.0 <= at[f"{key}_ci95"][0] <= at[key] <= at[f"{key}_ci95"][1] <= 1.0


def _accepted_frame(probs, labels) -> pd.DataFrame:
    n = len(probs)
    return pd.DataFrame({"key": [f"i{i}" for i in range(n)], "patient": [f"p{i}" for i in range(n)],
                         "label": labels, "status": "accepted", "probability": probs,
                         "decision": ["pneumonia" if p >= 0.5 else "no pneumonia" for p in probs]})


@pytest.mark.requirement("REQ-ASSESS-001")
def test_perfect_separation_on_a_handful_of_images_is_not_an_auroc_pass():
    """3 positives above 3 negatives: AUROC 1, DeLong variance 0, DeLong interval [1, 1]. Judged on it
    (as before) any criterion passed; judged on Newcombe's score interval [0.5010, 1] it does not."""
    metrics = standalone_metrics(_accepted_frame([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0]), 0.5, 100, 0)
    assert metrics["auroc"]["value"] == 1.0 and metrics["auroc"]["delong"]["ci95"] == [1.0, 1.0]
    verdict = judge({"auroc": 0.85, "sensitivity": 0.5, "specificity": 0.5}, metrics)
    auroc = verdict["criteria"]["auroc"]
    assert auroc["passed"] is False and verdict["passed"] is False
    assert auroc["method"] == "Newcombe (2006) score interval (DeLong degenerate)"
    assert auroc["lower_bound"] == pytest.approx(0.501019, abs=2e-6) and "degenerate" in auroc["note"]
    assert metrics["auroc"]["interval"] == {"ci95": pytest.approx([0.501019, 1.0], abs=2e-6),
                                            "method": auroc["method"],
                                            "delong_degenerate": metrics["auroc"]["interval"]["delong_degenerate"]}
    # 3/3 detected: Clopper-Pearson [0.2924, 1] (0.025^(1/3) = 0.292402) - not zero width, judged as usual
    assert verdict["criteria"]["sensitivity"]["lower_bound"] == pytest.approx(0.025 ** (1 / 3))
    assert verdict["criteria"]["sensitivity"]["passed"] is False


def test_a_zero_width_or_missing_interval_is_never_a_pass():
    metrics = {"sensitivity": {"clopper_pearson": [float("nan"), float("nan")]},
               "specificity": {"clopper_pearson": [0.9, 0.9]},
               "auroc": {"interval": {"ci95": [0.9, 0.9], "method": "DeLong", "delong_degenerate": None}}}
    rows = judge({"auroc": 0.5, "sensitivity": 0.0, "specificity": 0.5}, metrics)["criteria"]
    assert [rows[k]["passed"] for k in ("auroc", "sensitivity", "specificity")] == [False, False, False]
    assert "zero width" in rows["auroc"]["note"] and "no interval" in rows["sensitivity"]["note"]


def _chest(make_dicom, name, seed, **header):
    pixels = (np.random.default_rng(seed).random((512, 512)) * 4095).astype(np.uint16)
    return make_dicom(name, pixels, bits_stored=12, **header)


@pytest.fixture
def dicom_set(make_dicom, tmp_path):
    """Eight chest DICOMs, a lateral, a CT, a file without a label, and a labels CSV with an
    unknown path, a duplicate and a label that is not 0/1."""
    folder = tmp_path / "set"
    for i in range(8):
        _chest(make_dicom, f"set/chest{i}.dcm", i)
    _chest(make_dicom, "set/lateral.dcm", 20, ViewPosition="LL")
    shutil.copyfile(pydicom_test_file("CT_small.dcm"), folder / "ct.dcm")
    _chest(make_dicom, "set/unlabelled.dcm", 30)
    labels = folder.parent / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([[f"chest{i}.dcm", i % 2] for i in range(8)])
        writer.writerows([["lateral.dcm", 1], ["ct.dcm", 0], ["missing.dcm", 1], ["chest0.dcm", 0],
                          [str(folder / "chest9.dcm"), 1], ["chest7.dcm", "2"]])
    return folder, labels


@pytest.mark.requirement("REQ-DATA-001", "REQ-DICOM-001", "REQ-ASSESS-001")
def test_dicom_mode_counts_every_refusal_and_every_unmatched_label(bundle, dicom_set, tmp_path):
    folder, labels = dicom_set
    inputs = from_dicom_labels(folder, labels)
    reasons = sorted(e["reason"] for e in inputs.excluded)
    assert reasons == sorted([LABEL_WITHOUT_FILE, LABEL_WITHOUT_FILE, DUPLICATE_LABEL, INVALID_LABEL,
                              FILE_WITHOUT_LABEL])
    assert [e for e in inputs.excluded if e["reason"] == DUPLICATE_LABEL][0]["detail"].endswith("line 2")
    document = assess(bundle, inputs, tmp_path / "out", "dicom-set", n_bootstrap=100)
    by_key = {r["key"]: r for r in document["scoring"]["not_scored"]}
    assert set(by_key) == {"lateral.dcm", "ct.dcm"} and all(r["status"] == "refused" for r in by_key.values())
    assert "ViewPosition" in by_key["lateral.dcm"]["reason"] and "Modality" in by_key["ct.dcm"]["reason"]
    everything = document["all_inputs"]
    assert everything["n_inputs"] == 10 and everything["n_not_scored"] == 2
    assert everything["sensitivity"]["n"] == 5  # the refused lateral positive counts as missed
    assert left_out(document) == 7


@pytest.mark.requirement("REQ-BUNDLE-002")
def test_cli_refuses_a_tampered_or_unsigned_bundle_before_scoring(trained_run, dicom_set, tmp_path, capsys):
    folder, labels = dicom_set
    bundle = shutil.copytree(trained_run / "bundle", tmp_path / "bundle")
    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys)]) == 0
    out = tmp_path / "assessment"
    code = main(["assess", "--bundle", str(bundle), "--name", "x", "--dicom", str(folder), "--labels", str(labels),
                 "--out", str(out), "--trusted-key", str(keys / "signing_key.pub.pem"), "--bootstrap", "100"])
    assert code == 2 and "not signed" in capsys.readouterr().err and not (out / PREDICTIONS).exists()
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys / "signing_key.pem")]) == 0
    document = json.loads((bundle / "device.json").read_text())
    document["threshold"]["value"] = 0.0001  # the forger's edit, hashes recomputed
    from cxr_device.runtime.bundle import canonical_hash

    document["content_sha256"] = canonical_hash(document)
    (bundle / "device.json").write_text(json.dumps(document, indent=2) + "\n")
    code = main(["assess", "--bundle", str(bundle), "--name", "x", "--dicom", str(folder), "--labels", str(labels),
                 "--out", str(out), "--trusted-key", str(keys / "signing_key.pub.pem"), "--bootstrap", "100"])
    assert code == 2 and "not valid for the pinned key" in capsys.readouterr().err and not (out / PREDICTIONS).exists()


def test_cli_writes_outputs_and_exits_1_when_inputs_were_left_out(trained_run, dicom_set, tmp_path, capsys):
    folder, labels = dicom_set
    out = tmp_path / "a"
    code = main(["assess", "--bundle", str(trained_run / "bundle"), "--name", "dicom-set", "--dicom", str(folder),
                 "--labels", str(labels), "--out", str(out), "--bootstrap", "100"])
    assert code == 1
    text = capsys.readouterr()
    assert "left out" in text.out + text.err
    document = json.loads((out / ASSESSMENT).read_text())
    assert document["inputs"]["n_excluded"] == 5 and document["scoring"]["n_not_scored"] == 2


@pytest.mark.parametrize("body, words", [
    ("file,label\na.dcm,1\n", "header 'path,label'"),
    ("path,label\n", "no rows"),
    ("path,label\na.dcm,1,extra\n", "line 2: expected 2 fields"),
])
def test_unusable_labels_files_are_precise_errors(tmp_path, body, words):
    (tmp_path / "d").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text(body)
    with pytest.raises(Exception, match=words) as err:
        from_dicom_labels(tmp_path / "d", labels)
    assert str(labels) in str(err.value)


def test_invalid_labels_are_counted_exclusions(make_dicom, tmp_path):
    _chest(make_dicom, "d/a.dcm", 1)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.dcm,yes\n")
    inputs = from_dicom_labels(tmp_path / "d", labels)
    assert inputs.items == [] and [e["reason"] for e in inputs.excluded] == [INVALID_LABEL, FILE_WITHOUT_LABEL]


@pytest.mark.requirement("REQ-DATA-001")
def test_run_assesses_the_listed_sets_as_a_step_of_the_manifest(tmp_path):
    from fda_submission.pipeline import SKIPPED, Pipeline
    from fda_submission.run_config import load_run_config

    from .test_pipeline import CONFIG

    text = CONFIG.replace("EPOCHS", "2") + "assess:\n  - {name: held-out, cohort: run/cohort, split: test, bootstrap: 100}\n"
    (tmp_path / "run.yaml").write_text(text)
    config = load_run_config(tmp_path / "run.yaml")
    manifest = Pipeline(config, tmp_path / "run", progress=False, log=lambda line: None).run()
    assert list(manifest["steps"]) == ["synth", "cohort", "eda", "train", "evaluate", "assess", "submission"]
    step = manifest["steps"]["assess"]
    assert step["left_out"] == 0 and "assessment/held-out/assessment.json" in step["outputs"]
    document = json.loads((tmp_path / "run" / "assessment" / "held-out" / ASSESSMENT).read_text())
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert document["accepted"]["auroc"]["value"] == pytest.approx(metrics["splits"]["test"]["auroc"]["value"])
    again = Pipeline(config, tmp_path / "run", progress=False, log=lambda line: None).run()
    assert again["steps"]["assess"]["status"] == SKIPPED


def test_run_config_assess_entries_are_checked_at_load(tmp_path):
    from fda_submission.run_config import load_run_config

    from .test_pipeline import CONFIG

    base = CONFIG.replace("EPOCHS", "1")
    for body, words in [("assess:\n  - {name: a}\n", "exactly one of cohort"),
                        ("assess:\n  - {name: ../up, folders: x}\n", "assess[0].name"),
                        ("assess:\n  - {name: a, folders: x}\n  - {name: a, folders: y}\n", "repeated: a"),
                        ("assess:\n  - {name: a, dicom: x}\n", "dicom with labels"),
                        ("evaluate: {threshold_policy: target_specificity}\n", "needs a target")]:
        (tmp_path / "run.yaml").write_text(base.replace("evaluate: {bootstrap: 100}\n", "") + body)
        with pytest.raises(CxrDeviceError, match=re.escape(words)):
            load_run_config(tmp_path / "run.yaml")


def test_nih_metadata_rows_for_images_not_held_are_outside_the_set_not_left_out(bundle, tmp_path):
    """A metadata file describes more images than a set holds: those rows are counted and listed
    in outside_set.csv, but they are not exclusions and do not make the exit code 1; an invalid
    row still is an exclusion."""
    from PIL import Image

    from .conftest import NIH_HEADER_2020

    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(6):
        name = f"0000000{i}_000.png"
        Image.fromarray((np.random.default_rng(i).random((64, 64)) * 255).astype(np.uint8)).save(images / name)
        rows.append(f"{name},{'Pneumonia' if i % 2 else 'No Finding'},0,{i},45,M,PA,1024,1024,0.14,0.14")
    rows += ["00000090_000.png,No Finding,0,90,50,F,PA,1024,1024,0.14,0.14",  # no such image here
             "00000091_000.png,Pneumonia,0,91,abc,F,PA,1024,1024,0.14,0.14"]  # invalid age
    metadata = tmp_path / "meta.csv"
    metadata.write_text("\n".join([NIH_HEADER_2020, *rows]) + "\n")
    from validation.assessment_inputs import from_metadata

    inputs = from_metadata(metadata, [images])
    document = assess(bundle, inputs, tmp_path / "out", "nih", n_bootstrap=100)
    assert document["inputs"]["n_outside_set"] == 1 and (tmp_path / "out" / "outside_set.csv").is_file()
    assert [e["reason"] for e in document["inputs"]["excluded"]] == ["unparseable_age"]
    assert left_out(document) == 1 and document["scoring"]["n_accepted"] == 6
