"""Hostile and garbage input: nothing is scored that cannot be trusted, and nothing from an input
reaches a terminal, a JUnit report, a spreadsheet or an HTML document as live content.

* pixels that are not finite, constant, or absent are never scored (and check-dicom says so);
* a non-finite model output is never decided;
* escape codes, NUL bytes, formulas and undecodable file names in header values, paths and CSV
  cells are neutralised in every report format;
* links and images in the device profile cannot make the HTML documents run or fetch anything;
* a valid deflated DICOM is read, not called truncated.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import warnings
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from cxr_device.cli import main
from cxr_device.cohort import CohortSettings, build_cohort
from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.header_check import FAIL, UNREADABLE, check_file
from cxr_device.runtime.inference import Predictor
from cxr_device.runtime.input_rules import load_rules
from cxr_device.runtime.pipeline import REFUSED, predict_files

from .conftest import pydicom_test_file

ESC = "\x1b"
FORMULA = '=HYPERLINK("http://x","y")'
FILE_FORMULA = '=HYPERLINK("x","y")'  # a file name cannot hold "/"


@pytest.fixture(scope="module")
def bundle(trained_run):
    return load_bundle(trained_run / "bundle")


def _dicom(make_dicom, name: str, pixels: np.ndarray | None = None, **header) -> Path:
    """A chest DICOM (random 12-bit pixels unless given); pydicom's warnings about the invalid
    values a test writes on purpose are silenced."""
    if pixels is None:
        pixels = (np.random.default_rng(0).random((512, 512)) * 4095).astype(np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_dicom(name, pixels, bits_stored=12, **header)


def _untrustworthy(make_dicom) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the reason must contain)."""
    return {
        "slope-nan": (_dicom(make_dicom, "slope_nan.dcm", RescaleSlope="NaN", RescaleIntercept=0),
                      "RescaleSlope is nan"),
        "slope-zero": (_dicom(make_dicom, "slope_zero.dcm", RescaleSlope=0, RescaleIntercept=0),
                       "RescaleSlope is 0"),
        "constant": (_dicom(make_dicom, "constant.dcm", np.full((512, 512), 700, np.uint16)), "constant image"),
    }


# --- 2. garbage is never scored -----------------------------------------------------------------
@pytest.mark.requirement("REQ-PRED-001", "REQ-PIX-003")
def test_predict_refuses_nan_or_zero_slope_and_constant_pixels(bundle, make_dicom):
    cases = _untrustworthy(make_dicom)
    results = predict_files([path for path, _ in cases.values()], bundle)
    for (name, (_, words)), result in zip(cases.items(), results):
        assert result.status == UNREADABLE, name
        assert words in result.reason, (name, result.reason)
        assert result.probability is None and result.decision is None and result.threshold is None, name


def test_check_dicom_decode_marks_untrustworthy_pixels_unreadable(make_dicom, capsys):
    cases = _untrustworthy(make_dicom)
    assert main(["check-dicom", *(str(p) for p, _ in cases.values()), "--decode", "--format", "json"]) == 1
    files = {Path(f["path"]).name: f for f in json.loads(capsys.readouterr().out)["files"]}
    for path, words in cases.values():
        assert files[path.name]["status"] == UNREADABLE and words in files[path.name]["reason"]
    # without --decode the header is all that is checked: the same files pass it
    assert main(["check-dicom", *(str(p) for p, _ in cases.values()), "--format", "json"]) == 0


@pytest.mark.requirement("REQ-PIX-003")
def test_a_dicom_without_pixel_data_fails_the_header_check_and_is_refused(bundle, make_dicom, capsys):
    path = _dicom(make_dicom, "no_pixels.dcm", PixelData=None)
    assert main(["check-dicom", str(path), "--format", "json"]) == 1
    [file] = json.loads(capsys.readouterr().out)["files"]
    assert file["status"] == FAIL and [f["rule"] for f in file["findings"]] == ["pixel-data"]
    [result] = predict_files([path], bundle)
    assert result.status == REFUSED and "pixel-data" in result.reason and result.probability is None


def test_a_non_finite_model_output_is_not_decided(bundle, make_dicom, monkeypatch):
    monkeypatch.setattr(Predictor, "logits", lambda self, batch: np.full(len(batch), np.nan))
    [result] = predict_files([_dicom(make_dicom, "fine.dcm")], bundle)
    assert result.status == UNREADABLE and "non-finite probability" in result.reason
    assert result.probability is None and result.decision is None


# --- 3. hostile text in reports -----------------------------------------------------------------
ESCAPES = {"BodyPartExamined": f"{ESC}[2J", "ViewPosition": f"{ESC}]8;;http://evil{ESC}\\PA"}


@pytest.mark.requirement("REQ-INPUT-002")
def test_escape_codes_in_header_values_never_reach_the_terminal(trained_run, make_dicom, capsys):
    path = _dicom(make_dicom, "escape.dcm", **ESCAPES)
    assert main(["check-dicom", str(path)]) == 1
    check = capsys.readouterr().out
    assert main(["predict", "--bundle", str(trained_run / "bundle"), str(path)]) == 1
    predict = capsys.readouterr().out
    for out in (check, predict):
        assert ESC not in out and "\\x1b[2J" in out and "body-part" in out


def test_undecodable_and_control_characters_in_file_names_are_printable(trained_run, tmp_path, capsys):
    """A file name whose bytes are not UTF-8 (held by Python as lone surrogates) and one with an
    escape code: the table still prints on a strict UTF-8 stream, and shows both escaped."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in (b"\xff\xfe.dcm", b"\x1b[2Jx.dcm"):
        (folder / os.fsdecode(name)).write_bytes(b"not a dicom")
    assert main(["check-dicom", str(folder), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    out.encode("utf-8")  # strict: a lone surrogate would raise
    assert "\\xff\\xfe.dcm" in out and "\\x1b[2Jx.dcm" in out and ESC not in out
    assert main(["predict", "--bundle", str(trained_run / "bundle"), str(folder)]) == 1
    out = capsys.readouterr().out
    out.encode("utf-8")
    assert "\\xff\\xfe.dcm" in out and ESC not in out


def test_a_nul_byte_in_a_header_value_still_gives_a_junit_report_that_parses(make_dicom, capsys):
    path = _dicom(make_dicom, "nul.dcm", BodyPartExamined="CHE\x00ST\x01")
    assert main(["check-dicom", str(path), "--format", "junit"]) == 1
    root = ET.fromstring(capsys.readouterr().out)
    [failure] = root.iter("failure")
    assert "'CHE\\x00ST\\x01'" in failure.get("message") and "'CHE\\x00ST\\x01'" in failure.text


def _cells(text: str) -> set[str]:
    return {cell for row in csv.reader(io.StringIO(text)) for cell in row}


def _formula_cells(text: str) -> list[str]:
    """Cells a spreadsheet would run: starting with = + - @ (or tab/CR) and not a plain number."""
    def number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    return [cell for row in csv.reader(io.StringIO(text)) for cell in row
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not number(cell)]


@pytest.mark.requirement("REQ-INPUT-002")
def test_formulas_in_header_values_and_file_names_are_neutralised_in_csv_reports(trained_run, make_dicom,
                                                                                   tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths, so that a file name starts a cell
    _dicom(make_dicom, "formula_value.dcm", BodyPartExamined=FORMULA)
    _dicom(make_dicom, f"{FILE_FORMULA}.dcm")
    names = ["formula_value.dcm", f"{FILE_FORMULA}.dcm"]
    assert main(["check-dicom", *names, "--format", "csv"]) == 1
    check = capsys.readouterr().out
    assert main(["predict", "--bundle", str(trained_run / "bundle"), *names, "--format", "csv"]) == 1
    predict = capsys.readouterr().out
    for text in (check, predict):
        assert _formula_cells(text) == []
        assert f"'{FILE_FORMULA}.dcm" in _cells(text)
    assert "'" + FORMULA.upper() in _cells(check)  # the found value of body-part, as the rules normalise it


def _metadata_with_formula(synth_dataset, tmp_path) -> Path:
    csv_path, _ = synth_dataset
    lines = csv_path.read_text().splitlines()
    hostile = '"' + FORMULA.replace('"', '""') + '"' + lines[1][lines[1].index(","):]
    path = tmp_path / "meta.csv"
    path.write_text("\n".join([*lines, hostile]) + "\n")
    return path


def test_exclusions_frame_for_csv_neutralises_a_formula_image_index(synth_dataset, tmp_path):
    metadata = _metadata_with_formula(synth_dataset, tmp_path)
    cohort = build_cohort(CohortSettings(metadata=str(metadata), images=(str(synth_dataset[1]),)))
    assert FORMULA in set(cohort.exclusions.frame()["image_id"])  # the data itself is unchanged
    text = cohort.exclusions.frame_for_csv().to_csv(index=False, lineterminator="\n")
    assert _formula_cells(text) == [] and f"'{FORMULA}" in _cells(text)


def test_exclusions_csv_written_by_cohort_holds_no_formula(synth_dataset, tmp_path):
    """Needs cxr_device/cohort.py write_cohort to write ``exclusions.frame_for_csv()``."""
    metadata = _metadata_with_formula(synth_dataset, tmp_path)
    out = tmp_path / "cohort"
    main(["cohort", "--metadata", str(metadata), "--images", str(synth_dataset[1]), "--out", str(out)])
    text = (out / "exclusions.csv").read_text()
    assert "HYPERLINK" in text and _formula_cells(text) == []


# --- 4. links and images in the device profile --------------------------------------------------
HOSTILE_PROFILE = """\
intended_use: >-
  Hostile [click](javascript:alert(1)), [x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==),
  [J](JaVa&#x09;Script:alert(2)), [rel](../../etc/passwd), ![t](http://example.com/t.png),
  <img src=http://example.com/a.png> <script>alert(3)</script> and a fine [link](https://example.com/ok).
device_name: Evil <b onmouseover=alert(4)>device</b>
"""


@pytest.mark.requirement("REQ-INPUT-002")
def test_profile_links_and_images_are_inert_in_the_html_documents(trained_run, tmp_path):
    from fda_submission.document_control import DOCUMENTS
    from fda_submission.render import render_documents

    profile = tmp_path / "profile.yaml"
    profile.write_text(HOSTILE_PROFILE)
    written = render_documents(trained_run, tmp_path / "docs", profile, ("md", "html"))
    assert len(written["html"]) == len(DOCUMENTS)
    quoting = {"package_index", "device_description", "algorithm_description", "summary_510k", "labeling", "usability"}
    assert quoting <= {path.stem for path in written["html"]}
    for path in written["html"]:
        page = path.read_text()
        assert "Evil &lt;b onmouseover=alert(4)&gt;device" in page  # every title names the device, escaped
        assert "Hostile" in page or path.stem not in quoting  # these documents quote the intended use
        assert not re.search("javascript:", page, re.IGNORECASE)
        assert 'src="http' not in page and "<script" not in page and "<b " not in page
        # only embedded PNG or SVG figures (an <img> runs no script): no other data URL (a MIME type or a
        # bare comma after "data:"), while Python signatures and prose in the documents may say "data: bytes"
        assert re.findall(r"data:(?!image/(?:png|svg\+xml);base64,)(?:[a-z]+/[^\s,;]*)?[;,]", page,
                          re.IGNORECASE) == []
        assert re.findall(r'href="(?!https?:|mailto:|#)', page) == []
    description = (tmp_path / "docs" / "algorithm_description.html").read_text()
    assert "<span>click</span>" in description and "<span>t</span>" in description  # the words stay
    assert '<a href="https://example.com/ok">link</a>' in description
    assert 'src="data:image/png;base64,' in description  # the run's own figures are still there
    assert "&lt;img src=http://example.com/a.png&gt;" in description  # raw HTML shown, not run


def test_safe_href_and_src_rules():
    from fda_submission.render import safe_href, safe_src

    for href in ("https://a.org", "HTTP://a.org", "mailto:a@b.org", "#section-2"):
        assert safe_href(href), href
    for href in ("javascript:alert(1)", " JavaScript:x", "java\tscript:x", "&#106;avascript:x",
                 "&amp;#106;avascript:x", "data:text/html;base64,AAAA", "file:///etc/passwd", "vbscript:x",
                 "../up", "//evil.org/x", ""):
        assert not safe_href(href), href
    assert safe_src("data:image/png;base64,iVBORw0KGgo=")
    for src in ("http://e.org/x.png", "data:image/svg+xml;base64,AAAA", "data:image/png;base64,<x>", "x.png"):
        assert not safe_src(src), src


# --- 6. deflated transfer syntax ----------------------------------------------------------------
def test_a_valid_deflated_dicom_is_not_called_truncated_and_decodes():
    path = pydicom_test_file("image_dfl.dcm")
    header_only = check_file(path, load_rules())
    assert header_only.status != UNREADABLE and "truncated" not in header_only.reason
    decoded = check_file(path, load_rules(), decode=True)
    assert decoded.status != UNREADABLE, decoded.reason
    from cxr_device.dicom_pixels import read_dicom_pixels

    image = read_dicom_pixels(path)
    assert image.shape == (512, 512) and np.isfinite(image).all() and image.max() > image.min()
