"""check-dicom end to end: every input once, stable order, four formats, exit codes, no PHI."""
from __future__ import annotations

import csv
import io
import json
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_device.cli import main
from cxr_device.runtime.header_check import FAIL, PASS, UNREADABLE, collect_paths
from cxr_device.runtime.input_rules import load_rules
from validation.dicom_check import check_paths
from validation.dicom_report import render

from .conftest import shared

RULES = load_rules()
PHI = ("SYNTHETIC^PHANTOM", "SYNTH000000", "19700101")


@pytest.fixture
def mixed_folder(make_dicom, tmp_path):
    """Good, failing and unreadable files, nested, plus a hidden file that is skipped."""
    make_dicom("good_pa.dcm")
    make_dicom("good_ap.dcm", ViewPosition=None, PatientPosition="AP")
    make_dicom("sub/ct.dcm", Modality="CT")
    make_dicom("sub/lateral.dcm", ViewPosition="LL")
    make_dicom("sub/missing.dcm", BodyPartExamined=None)
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / ".hidden").write_text("skipped")
    return tmp_path


def test_every_file_once_sorted_same_with_any_worker_count(mixed_folder):
    paths = collect_paths([mixed_folder, mixed_folder / "good_pa.dcm"])  # named twice, listed once
    assert len(paths) == 7 and paths == sorted(paths)
    one = check_paths(paths, RULES, workers=1)
    two = check_paths(paths, RULES, workers=2)
    assert [r.as_dict() for r in one] == [r.as_dict() for r in two]
    status = {p.name: r.status for p, r in zip(paths, one)}
    assert status == {"empty.dcm": UNREADABLE, "good_ap.dcm": PASS, "good_pa.dcm": PASS, "notes.txt": UNREADABLE,
                      "ct.dcm": FAIL, "lateral.dcm": FAIL, "missing.dcm": FAIL}


def test_json_csv_junit_reports(mixed_folder):
    results = check_paths(collect_paths([mixed_folder]), RULES)
    document = json.loads(render(results, RULES, "json"))
    assert document["summary"] == {**document["summary"], "files": 7, PASS: 2, FAIL: 3, UNREADABLE: 2}
    assert document["rules"]["sha256"] == RULES.sha256
    rows = list(csv.DictReader(io.StringIO(render(results, RULES, "csv"))))
    assert {r["path"] for r in rows} == {r.path for r in results}
    assert any(r["rule"] == "modality" and r["found"] == "CT" for r in rows)
    assert any(r["rule"] == "body-part" and r["found"] == "<missing>" for r in rows)
    junit = ET.fromstring(render(results, RULES, "junit"))
    suite = junit.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("7", "3", "2")
    assert len(suite.findall("testcase")) == 7
    table = render(results, RULES, "table")
    assert table.rstrip().endswith("checked 7 files: 2 pass, 3 fail, 2 unreadable (0 warnings)")


@pytest.mark.requirement("REQ-DICOM-003")
@pytest.mark.parametrize("fmt", ["table", "json", "csv", "junit"])
def test_no_phi_unless_asked(make_dicom, fmt):
    results = check_paths([make_dicom(Modality="CT")], RULES)
    report = render(results, RULES, fmt)
    assert not any(value in report for value in PHI)
    shown = render(check_paths([make_dicom(Modality="CT")], RULES, show_phi=True), RULES, fmt)
    if fmt != "junit":  # JUnit carries findings only
        assert "SYNTHETIC^PHANTOM" in shown


def test_cli_exit_codes_formats_and_out_file(mixed_folder, make_dicom, tmp_path, capsys):
    good = make_dicom("only/good.dcm")
    assert main(["check-dicom", str(good), "--quiet"]) == 0
    assert "1 pass" in capsys.readouterr().out
    report = tmp_path / "qa.xml"
    assert main(["check-dicom", str(mixed_folder), "--format", "junit", "--out", str(report), "--workers", "2"]) == 1
    assert "checked 8 files" in capsys.readouterr().err  # the 7 of the fixture + only/good.dcm
    assert ET.parse(report).getroot().tag == "testsuites"
    bad_rules = tmp_path / "r.yaml"
    bad_rules.write_text("rules: []")
    assert main(["check-dicom", str(good), "--rules", str(bad_rules)]) == 2
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert main(["check-dicom", str(empty_dir)]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["check-dicom", str(good), "--format", "xml"])
    assert exit_.value.code == 2


def test_decode_catches_corrupt_pixel_data(make_dicom, tmp_path):
    from pydicom import dcmread

    # declare 16 bits allocated while keeping 8-bit data: the header is fine, the pixels are not
    ds = dcmread(make_dicom("enc.dcm", pixels=np.zeros((512, 512), np.uint8)))
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    bad = tmp_path / "inconsistent.dcm"
    ds.save_as(bad)
    assert check_paths([bad], RULES)[0].status == PASS  # header-only: looks fine
    decoded = check_paths([bad], RULES, decode=True)[0]
    assert decoded.status == UNREADABLE and "pixel data" in decoded.reason


def test_real_folder():
    results = check_paths(collect_paths([shared("dicom")]), RULES, workers=2, decode=True)
    status = {r.path.rsplit("/", 1)[-1]: r.status for r in results}
    assert status["nih_dx_secondary_capture_minimal_header.dcm"] == FAIL
    assert [s for n, s in status.items() if n.startswith("RG1_")] == [PASS] * 4
    assert len(results) == 7


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["good", "ct", "empty", "text", "nobody"]), min_size=1, max_size=8))
@pytest.mark.filterwarnings("ignore:.*VR:UserWarning")
def test_every_input_reported_exactly_once(tmp_path_factory, kinds):
    from cxr_device.synth_dicom import write_synthetic_dicom

    folder = tmp_path_factory.mktemp("h")
    pixels = np.zeros((512, 512), np.uint8)
    for i, kind in enumerate(kinds):
        path = folder / f"{i:02d}_{kind}.dcm"
        if kind == "good":
            write_synthetic_dicom(path, pixels)
        elif kind == "ct":
            write_synthetic_dicom(path, pixels, Modality="CT")
        elif kind == "nobody":
            write_synthetic_dicom(path, pixels, BodyPartExamined=None, Modality=None, SOPClassUID=None)
        else:
            path.write_text("" if kind == "empty" else "plain text")
    results = check_paths(collect_paths([folder]), RULES)
    assert [r.path for r in results] == sorted(str(p) for p in folder.iterdir())
    assert sum(r.status == PASS for r in results) == kinds.count("good")
