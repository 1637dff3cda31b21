"""DICOM results: the in-memory device API, standard-valid synthetic DICOMs, the TID 1500 SR (and
the Grad-CAM Secondary Capture) read back with highdicom and checked with dciodvfy, deterministic
result UIDs, the study's chosen image, and `predict --dicom-out` end to end."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxr_device.cli import main
from cxr_device.demo import write_demo_dicoms
from cxr_device.runtime.bundle import load_bundle, write_bundle
from cxr_device.runtime.dicom_results import (
    SUMMARY,
    DeviceIdentity,
    build_sr,
    result_uids,
    write_results,
)
from cxr_device.runtime.pipeline import (
    ACCEPTED,
    REFUSED,
    UNREADABLE,
    DevicePipeline,
    Prediction,
)
from cxr_device.runtime.study_record import choose_study_image
from cxr_device.synth_dicom import SYNTHETIC_NAME, write_synthetic_dicom

from .conftest import shared

DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
COMPREHENSIVE_SR, SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"
PHI = (SYNTHETIC_NAME, "SYNTH000000", "19700101")  # the synthetic PatientName, PatientID, PatientBirthDate


# --- shared helpers (test_node.py uses them too) ----------------------------------------------
@pytest.fixture(scope="session")
def quick_bundle(tmp_path_factory) -> Path:
    """A locked bundle with an untrained small CNN at 32 px: the device path without training."""
    import torch

    from cxr_device.models import ModelSpec, build_model
    from cxr_device.preprocessing import Preprocessing
    from cxr_device.runtime.input_rules import default_rules_path

    root = tmp_path_factory.mktemp("quick_bundle")
    (root / "cohort.csv").write_text("image_id\n")
    torch.manual_seed(0)
    write_bundle(root / "bundle", build_model(ModelSpec(arch="small_cnn", weights="none")),
                 Preprocessing(image_size=32), {"value": 0.5, "rule": "max_f1"}, default_rules_path(),
                 root / "cohort.csv")
    return root / "bundle"


@pytest.fixture(scope="session")
def demo_dicoms(tmp_path_factory) -> dict[str, Path]:
    return write_demo_dicoms(tmp_path_factory.mktemp("demo_dicoms"))


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dciodvfy prints for a file."""
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


_TAG = re.compile(r"\(0x[0-9a-f]{4},0x[0-9a-f]{4}\)")


def errors_not_from_source(result: Path, source: Path) -> list[str]:
    """dciodvfy's errors for a result, less those it also finds in the source for the same
    attribute: identity values are copied verbatim, invalid ones included (on purpose)."""
    inherited = dciodvfy_errors(source)
    tags = {m for line in inherited for m in _TAG.findall(line)}
    return [line for line in dciodvfy_errors(result)
            if line not in inherited and not (set(_TAG.findall(line)) and set(_TAG.findall(line)) <= tags)]


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def read_sr(path: Path) -> dict:
    """What a TID 1500 reader finds in one of the device's SRs, read with highdicom."""
    import highdicom as hd

    sr = hd.sr.srread(path)
    [group] = sr.content.get_image_measurement_groups()
    items = list(_walk(sr.ContentSequence))

    def texts(code: str) -> list[str]:
        return [i.TextValue for i in items if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == code]

    summary = [i.ConceptCodeSequence[0].CodeValue for i in items if i.ValueType == "CODE"
               and i.ConceptNameCodeSequence[0].CodeValue == SUMMARY.value]
    observer = [i.UID for i in items if i.ValueType == "UIDREF" and i.ConceptNameCodeSequence[0].CodeValue == "121012"]
    return {"sr": sr, "finding": group.finding_type.value,
            "measurements": {m.name.meaning: m.value for m in group.get_measurements()},
            "evaluations": {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()},
            "referenced": [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"],
            "algorithm": {"name": texts("111001"), "version": texts("111003"), "parameters": texts("111002")},
            "comments": texts("121106"), "summary": summary, "observer_uid": observer}


def results_in(folder: Path, modality: str = "SR") -> list[Path]:
    """The result files of one modality under a results folder."""
    return sorted(p for p in folder.rglob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == modality)


# --- 1. the in-memory device API ---------------------------------------------------------------
def test_pipeline_scores_path_bytes_and_dataset_with_one_parse_each(quick_bundle, demo_dicoms, monkeypatch):
    pipeline = DevicePipeline(load_bundle(quick_bundle))
    path = demo_dicoms["pa_chest_opacity"]
    calls = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: calls.append(1) or real(*a, **k))
    dataset = real(path)  # parsed here, before counting starts
    calls.clear()
    counts = []
    results = []
    for source in (path, path.read_bytes(), dataset):
        before = len(calls)
        results += pipeline.run([source], keep_datasets=True)
        counts.append(len(calls) - before)
    assert counts == [1, 1, 0]  # a path and bytes are parsed once; a dataset is never re-read
    assert [r.status for r in results] == [ACCEPTED] * 3
    assert len({round(r.probability, 12) for r in results}) == 1  # the same answer whatever the form
    for r in results:
        assert (r.sop_instance_uid, r.study_instance_uid, r.series_instance_uid) == (
            dataset.SOPInstanceUID, dataset.StudyInstanceUID, dataset.SeriesInstanceUID)
        assert r.dataset is not None and r.dataset.PatientName == SYNTHETIC_NAME
        assert "dataset" not in r.as_dict() and not any(p in json.dumps(r.as_dict()) for p in PHI)
    assert results[2].dataset is dataset
    [plain] = pipeline.run([path])
    assert plain.dataset is None  # datasets are handed back only when asked


# --- 2. standard-valid synthetic DICOMs ---------------------------------------------------------
def test_synthetic_dicoms_are_deterministic_marked_and_carry_the_study_attributes(tmp_path):
    pixels = (np.arange(512 * 512).reshape(512, 512) % 4096).astype(np.uint16)
    first = write_synthetic_dicom(tmp_path / "x.dcm", pixels, seed=7, bits_stored=12).read_bytes()
    assert write_synthetic_dicom(tmp_path / "x.dcm", pixels, seed=7, bits_stored=12).read_bytes() == first
    assert write_synthetic_dicom(tmp_path / "x.dcm", pixels, seed=8, bits_stored=12).read_bytes() != first
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    for keyword in ("AccessionNumber", "StudyDate", "StudyTime", "StudyID", "ReferringPhysicianName",
                    "ImageType", "BurnedInAnnotation", "PresentationLUTShape", "RescaleSlope", "WindowCenter"):
        assert keyword in ds, keyword
    assert ds.PatientName == SYNTHETIC_NAME and "SYNTHETIC" in ds.ImageComments and "SYNTHETIC" in ds.SeriesDescription
    removed = pydicom.dcmread(write_synthetic_dicom(tmp_path / "c.dcm", pixels, BodyPartExamined=None, Modality="CT"))
    assert "BodyPartExamined" not in removed and removed.Modality == "CT"  # negative examples still possible


@needs_dciodvfy
def test_demo_and_default_synthetic_dicoms_pass_dciodvfy(demo_dicoms, make_dicom):
    for name, path in {**demo_dicoms, "make_dicom": make_dicom("default.dcm")}.items():
        assert dciodvfy_errors(path) == [], name
    assert pydicom.dcmread(demo_dicoms["ct_head"]).SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # a real CT IOD


# --- 3. the SR, read back ----------------------------------------------------------------------
def _scored(bundle_dir: Path, paths: list[Path]) -> tuple[list[Prediction], DeviceIdentity]:
    bundle = load_bundle(bundle_dir)
    return DevicePipeline(bundle).run(paths, keep_datasets=True), DeviceIdentity.from_bundle(bundle)


def test_accepted_image_sr_holds_finding_probability_threshold_decision_and_device(quick_bundle, demo_dicoms,
                                                                                   tmp_path):
    [prediction], device = _scored(quick_bundle, [demo_dicoms["pa_chest_opacity"]])
    source = pydicom.dcmread(demo_dicoms["pa_chest_opacity"])
    [written] = write_results([prediction], device, tmp_path)
    assert written.sr.parent == tmp_path / source.StudyInstanceUID and not written.existed
    sr = read_sr(written.sr)
    ds = sr["sr"]
    assert ds.SOPClassUID == COMPREHENSIVE_SR and ds.Modality == "SR"
    assert ds.StudyInstanceUID == source.StudyInstanceUID  # into the source study ...
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID  # new series
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate"):
        assert ds[keyword].value == source[keyword].value, keyword  # patient and study modules copied
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert sr["finding"] == "233604007"  # SNOMED CT Pneumonia
    assert sr["measurements"]["Probability"] == pytest.approx(prediction.probability, abs=1e-9)
    assert sr["measurements"]["Threshold Value"] == pytest.approx(device.threshold, abs=1e-12)
    decision = "Present" if prediction.probability >= device.threshold else "Absent"
    assert sr["evaluations"] == {"Pneumonia": decision}
    assert sr["summary"] == ["111242" if decision == "Present" else "111241"]
    assert sr["algorithm"]["name"] == [device.name] * 2 and sr["algorithm"]["version"] == [device.version] * 2
    assert f"device.json sha256 {device.bundle_sha256}" in sr["algorithm"]["parameters"]
    assert sr["observer_uid"] == [device.observer_uid] and source.SOPInstanceUID in sr["referenced"]
    assert prediction.decision in sr["comments"][0]
    if DCIODVFY:
        assert dciodvfy_errors(written.sr) == []


def test_a_decision_below_the_threshold_is_coded_absent(quick_bundle, demo_dicoms, tmp_path):
    [prediction], device = _scored(quick_bundle, [demo_dicoms["ap_chest_clear"]])
    prediction.probability, prediction.threshold, prediction.decision = 0.2, 0.5, "no pneumonia"
    sr = build_sr(prediction, device)
    sr.save_as(tmp_path / "absent.dcm", enforce_file_format=True)
    read = read_sr(tmp_path / "absent.dcm")
    assert read["evaluations"] == {"Pneumonia": "Absent"} and read["summary"] == ["111241"]


@pytest.mark.requirement("REQ-PRED-001")
def test_refused_images_get_an_sr_that_says_refused_and_why(quick_bundle, demo_dicoms, tmp_path):
    predictions, device = _scored(quick_bundle, [demo_dicoms["lateral_chest"], demo_dicoms["ct_head"]])
    assert [p.status for p in predictions] == [REFUSED, REFUSED]
    for prediction, rule, value in zip(write_results(predictions, device, tmp_path), ("view-position", "modality"),
                                       ("'LL'", "'CT'")):
        sr = read_sr(prediction.sr)
        assert sr["measurements"] == {} and sr["evaluations"] == {}  # no probability, no decision
        assert sr["summary"] == ["111245"]  # no algorithm succeeded: the device did not read it
        assert sr["comments"][0].startswith("REFUSED") and "did not read" in sr["comments"][0]
        assert any(c.startswith(f"{rule}: ") and value in c for c in sr["comments"][1:]), sr["comments"]
        assert sr["algorithm"]["name"] == [device.name]  # which device refused it
        if DCIODVFY:
            assert dciodvfy_errors(prediction.sr) == []


def test_unreadable_but_parsable_image_gets_an_sr_with_the_reason(quick_bundle, make_dicom, tmp_path):
    constant = make_dicom("constant.dcm", np.full((512, 512), 700, np.uint16), bits_stored=12)
    predictions, device = _scored(quick_bundle, [constant])
    assert predictions[0].status == UNREADABLE and predictions[0].dataset is not None
    [written] = write_results(predictions, device, tmp_path / "out")
    sr = read_sr(written.sr)
    assert sr["comments"][0].startswith("UNREADABLE") and "constant image" in sr["comments"][1]


def test_unparsable_input_is_listed_without_a_result(quick_bundle, tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom at all" * 10)
    predictions, device = _scored(quick_bundle, [junk])
    [written] = write_results(predictions, device, tmp_path / "out")
    assert written.sr is None and "no parsable DICOM" in written.skipped
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.dcm"))


# --- 4. deterministic UIDs, idempotent writing ------------------------------------------------
def test_result_uids_are_deterministic_and_a_rerun_keeps_the_existing_result(quick_bundle, demo_dicoms, tmp_path):
    predictions, device = _scored(quick_bundle, [demo_dicoms["pa_chest_opacity"], demo_dicoms["lateral_chest"]])
    first = write_results(predictions, device, tmp_path)
    stamps = [w.sr.stat().st_mtime_ns for w in first]
    second = write_results(predictions, device, tmp_path)
    assert [w.sr for w in second] == [w.sr for w in first] and all(w.existed for w in second)
    assert [w.sr.stat().st_mtime_ns for w in second] == stamps  # kept, not rewritten
    assert len(list(tmp_path.rglob("*.dcm"))) == 2
    uids = result_uids("1.2.3", "1.2", device.bundle_sha256)
    assert uids == result_uids("1.2.3", "1.2", device.bundle_sha256)
    assert uids.sr_instance != result_uids("1.2.3", "1.2", "0" * 64).sr_instance  # another device: another answer
    assert uids.sr_instance != result_uids("1.2.3", "1.3", device.bundle_sha256).sr_instance  # moved study
    assert uids.sr_series == result_uids("1.2.4", "1.2", device.bundle_sha256).sr_series  # one series per study


# --- 5. the Secondary Capture -------------------------------------------------------------------
def test_secondary_capture_is_marked_not_for_primary_diagnosis(quick_bundle, demo_dicoms, tmp_path):
    bundle = load_bundle(quick_bundle)
    predictions = DevicePipeline(bundle).run([demo_dicoms["pa_chest_opacity"]], keep_datasets=True,
                                             heatmap_dir=tmp_path / "maps")
    [written] = write_results(predictions, DeviceIdentity.from_bundle(bundle), tmp_path / "out", secondary_capture=True)
    sc = pydicom.dcmread(written.sc)
    source = pydicom.dcmread(demo_dicoms["pa_chest_opacity"])
    assert sc.SOPClassUID == SECONDARY_CAPTURE and sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SeriesInstanceUID not in (source.SeriesInstanceUID, pydicom.dcmread(written.sr).SeriesInstanceUID)
    assert sc.BurnedInAnnotation == "YES" and "NOT FOR PRIMARY DIAGNOSIS" in sc.ImageComments
    assert "NOT FOR PRIMARY DIAGNOSIS" in sc.SeriesDescription and sc.PatientID == source.PatientID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    pixels = sc.pixel_array
    assert sc.PhotometricInterpretation == "RGB" and pixels.shape[2] == 3
    assert (pixels[2, :, 0] > 150).mean() > 0.5 and (pixels[2, :, 1] < 60).mean() > 0.5  # the red warning band
    if DCIODVFY:
        assert dciodvfy_errors(written.sc) == []


# --- 6. the study's chosen image ------------------------------------------------------------------
def test_study_choice_prefers_accepted_pa_then_ap_then_the_lowest_uid():
    images = [{"sop_instance_uid": "1.2.10", "status": ACCEPTED, "view": "AP"},
              {"sop_instance_uid": "1.2.9", "status": ACCEPTED, "view": "AP"},
              {"sop_instance_uid": "1.2.1", "status": REFUSED, "view": "PA"}]
    assert choose_study_image(images)["sop_instance_uid"] == "1.2.9"  # 9 < 10 number by number
    images.append({"sop_instance_uid": "1.2.11", "status": ACCEPTED, "view": "PA"})
    assert choose_study_image(images)["sop_instance_uid"] == "1.2.11"
    assert choose_study_image([images[2]]) is None


# --- 7. predict --dicom-out, end to end -----------------------------------------------------------
def test_predict_dicom_out_writes_one_sr_per_input_and_scs(quick_bundle, demo_dicoms, tmp_path, capsys):
    out = tmp_path / "dicom-results"
    files = [str(p) for p in demo_dicoms.values()]
    code = main(["predict", "--bundle", str(quick_bundle), *files, "--dicom-out", str(out), "--secondary-capture",
                 "--format", "json"])
    captured = capsys.readouterr()
    assert code == 1  # the lateral and the CT are refused
    assert "4 SR, 2 SC written" in captured.err
    assert not any(p in captured.out + captured.err for p in PHI)
    srs, scs = results_in(out, "SR"), results_in(out, "OT")
    assert len(srs) == 4 and len(scs) == 2
    answered = {read_sr(p)["referenced"][0] for p in srs}
    assert answered == {pydicom.dcmread(p).SOPInstanceUID for p in files}  # one SR per input
    chest = pydicom.dcmread(demo_dicoms["pa_chest_opacity"])
    study = json.loads((out / chest.StudyInstanceUID / "study.json").read_text())
    assert study["chosen"] == chest.SOPInstanceUID and study["counts"] == {ACCEPTED: 2, REFUSED: 1, UNREADABLE: 0}
    assert main(["predict", "--bundle", str(quick_bundle), *files, "--dicom-out", str(out)]) == 1
    assert "0 SR, 0 SC written, 4 already there" in capsys.readouterr().err  # a re-run answers nothing twice
    assert main(["predict", "--bundle", str(quick_bundle), files[0], "--secondary-capture"]) == 2
    assert "--secondary-capture needs --dicom-out" in capsys.readouterr().err


# --- 8. real DICOMs ---------------------------------------------------------------------------------
def test_real_dicoms_are_answered_with_srs(trained_run, tmp_path, capsys):
    folder = shared("dicom")
    names = ["RG1_UNCR.dcm", "siim_cr_chest_pa_jpeg_baseline.dcm", "nih_dx_secondary_capture_minimal_header.dcm"]
    out = tmp_path / "real"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["predict", "--bundle", str(trained_run / "bundle"), *(str(folder / n) for n in names),
              "--dicom-out", str(out), "--format", "json"])
    captured = capsys.readouterr()
    names_of_patients = [str(pydicom.dcmread(folder / n, stop_before_pixels=True).PatientName) for n in names]
    shown = captured.out + captured.err + " ".join(str(w.message) for w in caught)
    assert not any(name and name in shown for name in names_of_patients)  # not even in a library's warning
    files = {f["path"].rsplit("/", 1)[-1]: f for f in json.loads(captured.out)["files"]}
    srs = {read_sr(p)["referenced"][0]: p for p in results_in(out, "SR")}
    assert len(srs) == len(names)
    for name in names:
        source = pydicom.dcmread(folder / name, stop_before_pixels=True)
        sr = read_sr(srs[source.SOPInstanceUID])
        assert sr["sr"].StudyInstanceUID == source.StudyInstanceUID
        if files[name]["status"] == ACCEPTED:
            assert sr["measurements"]["Probability"] == pytest.approx(files[name]["probability"], abs=1e-9)
        else:  # e.g. the minimal header has no BodyPartExamined / ViewPosition: the refusal SR says so
            assert sr["summary"] == ["111245"] and len(sr["comments"]) >= 2
        if DCIODVFY:  # no error of its own; the source's invalid identity values are copied verbatim
            assert errors_not_from_source(srs[source.SOPInstanceUID], folder / name) == [], name
    assert files["nih_dx_secondary_capture_minimal_header.dcm"]["status"] == REFUSED
    minimal = read_sr(srs[pydicom.dcmread(folder / names[2], stop_before_pixels=True).SOPInstanceUID])
    assert any(c.startswith("body-part:") for c in minimal["comments"])
