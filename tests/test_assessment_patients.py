"""The bootstrap of `assess --dicom` resamples patients, not files: a DICOM's patient is its
PatientID (with IssuerOfPatientID), hashed; without patient ids the unit is the image and every
report says so (issue 22, item 1)."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cxr_device.cli import main
from cxr_device.runtime.bundle import load_bundle
from fda_submission.render import render_documents
from validation.assessment import ASSESSMENT, PREDICTIONS, assess, summary_lines
from validation.assessment_inputs import from_dicom_labels


def _set(make_dicom, tmp_path, n: int, **header):
    """``n`` chest DICOMs (alternating labels) and their labels CSV."""
    for i in range(n):
        pixels = (np.random.default_rng(i).random((512, 512)) * 4095).astype(np.uint16)
        make_dicom(f"set/f{i:02d}.dcm", pixels, seed=i, bits_stored=12, **header)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"f{i:02d}.dcm,{i % 2}\n" for i in range(n)))
    return tmp_path / "set", labels


def _hashed(issuer: str, patient: str) -> str:
    return hashlib.sha256(json.dumps([issuer, patient]).encode()).hexdigest()


@pytest.mark.requirement("REQ-ASSESS-001")
def test_twelve_files_of_one_patient_are_one_patient_and_no_id_is_written(trained_run, make_dicom, tmp_path, capsys):
    folder, labels = _set(make_dicom, tmp_path, 12, PatientID="PAT-0042", IssuerOfPatientID="HOSP-A")
    out = tmp_path / "out"
    code = main(["assess", "--bundle", str(trained_run / "bundle"), "--name", "one", "--dicom", str(folder),
                 "--labels", str(labels), "--out", str(out), "--bootstrap", "200"])
    printed = capsys.readouterr().out
    assert code == 0 and "bootstrap unit: patient (1 patient(s) among 12 images)" in printed
    assert "NOTE: several images per patient: DeLong and Clopper-Pearson" in printed
    document = json.loads((out / ASSESSMENT).read_text())
    accepted = document["accepted"]
    assert accepted["n_images"] == 12 and accepted["n_patients"] == 1 and document["bootstrap"]["unit"] == "patient"
    # one patient drawn every time: the bootstrap knows nothing beyond the point estimate
    assert accepted["auroc"]["bootstrap_ci95"] == [accepted["auroc"]["value"]] * 2
    predictions = pd.read_csv(out / PREDICTIONS, dtype=str)
    assert set(predictions["patient"]) == {_hashed("HOSP-A", "PAT-0042")}
    for path in out.rglob("*"):
        if path.is_file():
            assert b"PAT-0042" not in path.read_bytes() and b"HOSP-A" not in path.read_bytes(), path.name


def test_the_issuer_separates_patients_with_the_same_id(make_dicom, tmp_path):
    folder, labels = _set(make_dicom, tmp_path, 4, PatientID="7")
    for i, issuer in ((0, "HOSP-A"), (1, "HOSP-A"), (2, "HOSP-B")):  # f03 has no issuer
        pixels = (np.random.default_rng(i).random((512, 512)) * 4095).astype(np.uint16)
        make_dicom(f"set/f{i:02d}.dcm", pixels, seed=i, bits_stored=12, PatientID="7", IssuerOfPatientID=issuer)
    patients = [item.patient for item in from_dicom_labels(folder, labels).items]
    assert patients == [_hashed("HOSP-A", "7")] * 2 + [_hashed("HOSP-B", "7"), _hashed("", "7")]


@pytest.fixture
def run(trained_run, tmp_path):
    copy = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = copy / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(copy / "cohort")
    summary_path.write_text(json.dumps(summary))
    return copy


@pytest.mark.requirement("REQ-ASSESS-001", "REQ-DOC-001")
def test_without_patient_ids_the_unit_is_the_image_in_the_json_the_terminal_and_the_documents(run, make_dicom,
                                                                                             tmp_path):
    folder, labels = _set(make_dicom, tmp_path, 12, PatientID="")
    out = run / "assessment" / "no-ids"
    document = assess(load_bundle(run / "bundle"), from_dicom_labels(folder, labels), out, "no-ids",
                      n_bootstrap=200)
    assert document["bootstrap"]["unit"] == "image (no patient ids)"
    assert document["accepted"]["n_patients"] is None and document["accepted"]["n_without_patient_id"] == 12
    assert set(pd.read_csv(out / PREDICTIONS, keep_default_na=False)["patient"]) == {""}
    assert "  bootstrap unit: image (no patient ids)" in summary_lines(document)
    render_documents(run, tmp_path / "docs", formats=("md",))
    algorithm = (tmp_path / "docs" / "algorithm_description.md").read_text()
    table = algorithm.split("#### No ids")[1].split("####")[0]  # the set's name as a title
    assert "| bootstrap 95% (unit: image (no patient ids)) |" in table and "patient bootstrap" not in table
    assert "| images (patients) | 12 (no patient ids) |" in table
    assert "Bootstrap not by patient: no-ids" in algorithm and "Several images per patient: no-ids" not in algorithm


def test_the_documents_say_when_images_of_one_patient_were_counted_as_independent(run, make_dicom, tmp_path):
    folder, labels = _set(make_dicom, tmp_path, 12, PatientID="PAT-0042")
    assess(load_bundle(run / "bundle"), from_dicom_labels(folder, labels), run / "assessment" / "one", "one",
           n_bootstrap=200)
    render_documents(run, tmp_path / "docs", formats=("md",))
    algorithm = (tmp_path / "docs" / "algorithm_description.md").read_text()
    assert "| images (patients) | 12 (1) |" in algorithm and "| patient bootstrap 95% |" in algorithm
    issue = algorithm.split("Several images per patient: one")[1].split("\n")[0]
    assert "12 scored images of 1 patient(s)" in issue and "over one patient they cannot vary at all" in issue
