"""The fast header reader of check-dicom gives exactly the results of the full parse.

``check_file`` (header-only) reads plainly encoded files with ``scan_header`` and leaves every
other file to the full parse (``read_header``); ``check_file_full`` is the full parse alone.
Every test here compares the two on the same file, with and without --show-phi, and checks that
the fast reader was actually used where it should be (so that the comparison is not vacuous).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from cxr_device.runtime import header_scan
from cxr_device.runtime.header_check import (
    FAIL,
    PASS,
    UNREADABLE,
    check_file,
    check_file_full,
    collect_paths,
)
from cxr_device.runtime.header_scan import scan_header, wanted_tags
from cxr_device.runtime.input_rules import load_rules
from validation.dicom_check import check_paths

from .conftest import pydicom_test_file, shared

RULES = load_rules()
SITE_RULES_YAML = """
name: site-wide-net
rules:
  - {id: maker, attributes: [Manufacturer], allowed: [ACME], severity: warning}
  - {id: image-type, attributes: [ImageType], allowed: ['ORIGINAL\\\\PRIMARY'], severity: warning}
  - {id: spacing, attributes: [PixelSpacing, ImagerPixelSpacing], range: {min: 0.1, max: 0.2}}
  - {id: source, attributes: [SourceImageSequence], allowed: [NONE], optional: true, severity: warning}
  - {id: name, attributes: [PatientName], allowed: [NOBODY], severity: warning}
  - {id: institution, attributes: [InstitutionName], allowed: [X], optional: true}
  - {id: charset, attributes: [SpecificCharacterSet], allowed: [ISO_IR 100], optional: true}
  - {id: window, attributes: [WindowCenter], range: {min: 0, max: 100}, optional: true}
"""
PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "image_dfl.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
                 "MR_small_bigendian.dcm", "MR_truncated.dcm", "JPEG2000.dcm", "rtplan.dcm", "rtplan_truncated.dcm",
                 "SC_rgb_rle.dcm", "no_meta.dcm", "UN_sequence.dcm", "nested_priv_SQ.dcm", "badVR.dcm",
                 "JPEG2000-embedded-sequence-delimiter.dcm", "empty_charset_LEI.dcm"]


@pytest.fixture(scope="module")
def site_rules(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "site.yaml"
    path.write_text(SITE_RULES_YAML)
    return load_rules(path)


def fast_read(path, rules=RULES, show_phi=False):
    """What the fast reader made of ``path`` (None: it left the file to the full parse)."""
    return scan_header(str(path), wanted_tags(rules.tags, show_phi))


def assert_same(path, *rule_sets):
    """check_file and the full parse agree on ``path`` for each rule set, with and without PHI."""
    results = []
    for rules in rule_sets or (RULES,):
        for show_phi in (False, True):
            fast = check_file(path, rules, show_phi=show_phi)
            full = check_file_full(path, rules, show_phi=show_phi)
            assert fast.as_dict() == full.as_dict(), (path, rules.name, show_phi)
            results.append(fast)
    return results[0]


@pytest.mark.requirement("REQ-DICOM-001")
def test_real_dicoms_take_the_fast_path_with_identical_results(site_rules):
    folder = shared("dicom")
    paths = collect_paths([folder])
    assert len(paths) == 7
    for path in paths:
        assert fast_read(path) is not None, path.name  # all four encodings and both JPEGs are plain
        assert_same(path, RULES, site_rules)
    # a rule on a sequence of undefined length (SourceImageSequence in three RG1 files) is left to
    # the full parse; the four other files are read fast with the site rules too
    assert sum(fast_read(p, site_rules, show_phi=True) is not None for p in paths) == 4


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_test_files_identical(name, site_rules):
    path = pydicom_test_file(name)
    assert_same(path, RULES, site_rules)


def test_plain_pydicom_files_are_read_fast_others_left_to_the_full_parse():
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "rtplan.dcm"):
        assert fast_read(pydicom_test_file(name)) is not None, name
    for name in ("image_dfl.dcm", "MR_small_bigendian.dcm", "no_meta.dcm", "MR_truncated.dcm"):
        assert fast_read(pydicom_test_file(name)) is None, name  # deflated, big endian, no File Meta, cut


def test_deflated_is_not_called_truncated():
    result = assert_same(pydicom_test_file("image_dfl.dcm"))
    assert result.status != UNREADABLE and "truncated" not in result.reason


def _synthetic_variants(make_dicom, tmp_path):
    """A spread of synthetic files: passing, failing, odd encodings, sequences, no pixels."""
    out = {
        "good": make_dicom("good.dcm"),
        "ct": make_dicom("ct.dcm", Modality="CT"),
        "missing": make_dicom("missing.dcm", BodyPartExamined=None, ViewPosition=None, Modality=None),
        "patient-position": make_dicom("pp.dcm", ViewPosition=None, PatientPosition="AP"),
        "rgb": make_dicom("rgb.dcm", pixels=np.zeros((512, 512, 3), np.uint8)),
        "frames": make_dicom("frames.dcm", pixels=np.zeros((2, 512, 512), np.uint8), NumberOfFrames=2),
        "small": make_dicom("small.dcm", pixels=np.zeros((64, 64), np.uint8)),
        "age": make_dicom("age.dcm", PatientAge="about forty"),
        "thorax": make_dicom("thorax.dcm", BodyPartExamined=" thorax "),
        "processing": make_dicom("proc.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1.1"),
        "utf8": make_dicom("utf8.dcm", SpecificCharacterSet="ISO_IR 192", PatientName="Müller^Jörg",
                           InstitutionName="Hôpital Saint-Éloi", Manufacturer="acme"),
        "latin1": make_dicom("latin1.dcm", SpecificCharacterSet="ISO_IR 100", PatientName="Señora^Ñ"),
        "multi": make_dicom("multi.dcm", ImageType=["ORIGINAL", "PRIMARY"], PixelSpacing=[0.139, 0.139],
                            WindowCenter=["2048", "1024"]),
    }
    ds = dcmread(make_dicom("seq.dcm"))
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    nested = Dataset()
    nested.CodeValue = "113076"
    item.PurposeOfReferenceCodeSequence = Sequence([nested])
    ds.SourceImageSequence = Sequence([item, Dataset()])
    ds["SourceImageSequence"].is_undefined_length = True
    for sq_item in ds.SourceImageSequence:
        sq_item.is_undefined_length_sequence_item = True
    ds.save_as(tmp_path / "seq_undefined.dcm")
    out["sequence-undefined-length"] = tmp_path / "seq_undefined.dcm"
    ds["SourceImageSequence"].is_undefined_length = False
    for sq_item in ds.SourceImageSequence:
        sq_item.is_undefined_length_sequence_item = False
    ds.save_as(tmp_path / "seq_defined.dcm")
    out["sequence-defined-length"] = tmp_path / "seq_defined.dcm"

    ds = dcmread(make_dicom("implicit_src.dcm", Modality="CR"))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(tmp_path / "implicit.dcm")
    out["implicit"] = tmp_path / "implicit.dcm"

    ds = dcmread(make_dicom("padding_src.dcm"))
    ds.DataSetTrailingPadding = b"\0" * 32
    ds.save_as(tmp_path / "padding.dcm")
    out["trailing-padding"] = tmp_path / "padding.dcm"

    ds = dcmread(make_dicom("nopix_src.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "no_pixels.dcm")
    out["no-pixel-data"] = tmp_path / "no_pixels.dcm"

    data = out["good"].read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    out["truncated"] = tmp_path / "cut.dcm"
    (tmp_path / "cut_header.dcm").write_bytes(data[:300])
    out["truncated-header"] = tmp_path / "cut_header.dcm"
    (tmp_path / "empty.dcm").write_bytes(b"")
    out["empty"] = tmp_path / "empty.dcm"
    (tmp_path / "text.dcm").write_text("not a DICOM file at all, but long enough to have a byte 128 " * 5)
    out["text"] = tmp_path / "text.dcm"
    out["missing-file"] = tmp_path / "does_not_exist.dcm"
    (tmp_path / "a_folder.dcm").mkdir()
    out["folder"] = tmp_path / "a_folder.dcm"
    return out


@pytest.mark.requirement("REQ-DICOM-002")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_synthetic_variety_identical(make_dicom, tmp_path, site_rules):
    variants = _synthetic_variants(make_dicom, tmp_path)
    results = {kind: assert_same(path, RULES, site_rules) for kind, path in variants.items()}
    for kind in ("good", "ct", "missing", "utf8", "multi", "implicit", "trailing-padding", "no-pixel-data",
                 "sequence-undefined-length", "sequence-defined-length", "frames", "rgb"):
        assert fast_read(variants[kind], RULES, show_phi=True) is not None, kind
    assert fast_read(variants["sequence-defined-length"], site_rules) is not None  # a rule on a sequence
    assert fast_read(variants["sequence-undefined-length"], site_rules) is None  # ... of undefined length
    for kind in ("truncated", "truncated-header", "empty", "text", "missing-file", "folder"):
        assert fast_read(variants[kind]) is None, kind  # left to the full parse, and its words
        if kind != "truncated-header":  # (pydicom reads what is there: it fails, no Pixel Data)
            assert results[kind].status == UNREADABLE, kind
    assert results["good"].status == PASS and results["implicit"].status == PASS
    assert results["ct"].status == FAIL
    assert "truncated" in results["truncated"].reason
    assert "pixel-data" in {f.rule for f in results["truncated-header"].errors}
    assert results["empty"].reason == "empty file"
    no_pixels = results["no-pixel-data"]
    assert no_pixels.status == FAIL and [f.rule for f in no_pixels.errors] == ["pixel-data"]
    shown = check_file(variants["utf8"], site_rules, show_phi=True)
    assert shown.phi["patient_name"] == "Müller^Jörg"
    assert "Müller" not in str(check_file(variants["utf8"], site_rules).as_dict())  # PHI only when asked


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_and_two_workers_identical_on_the_variety(make_dicom, tmp_path):
    variants = _synthetic_variants(make_dicom, tmp_path)
    paths = collect_paths([tmp_path])
    assert {str(p) for p in variants.values() if p.is_file()} <= {str(p) for p in paths}
    one = check_paths(paths, RULES, workers=1, show_phi=True)
    two = check_paths(paths, RULES, workers=2, show_phi=True)
    assert [r.as_dict() for r in one] == [r.as_dict() for r in two]
    assert [r.as_dict() for r in one] == [check_file_full(p, RULES, show_phi=True).as_dict() for p in paths]


def test_only_the_header_bytes_are_read(make_dicom, monkeypatch):
    """A 2 MB image is checked from its first kilobytes: Pixel Data is located, never read."""
    path = make_dicom("big.dcm", pixels=np.ones((1024, 1024), np.uint16))
    read = []
    real_pread = os.pread

    def counting_pread(fd, n, offset):
        data = real_pread(fd, n, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(header_scan.os, "pread", counting_pread)
    scanned = fast_read(path)
    assert scanned is not None and scanned.pixel_data is not None
    offset, length = scanned.pixel_data
    assert length == 1024 * 1024 * 2 and offset + length == path.stat().st_size
    assert sum(read) <= 8192


def test_rules_on_pixel_data_or_ambiguous_vrs_use_the_full_parse(tmp_path, make_dicom):
    path = tmp_path / "ambiguous.yaml"
    path.write_text("rules:\n  - {id: smallest, attributes: [SmallestImagePixelValue], range: {min: 0}, optional: true}\n")
    rules = load_rules(path)
    assert wanted_tags(rules.tags, False) is None  # US or SS depends on Pixel Representation
    dicom = make_dicom("ambiguous.dcm", SmallestImagePixelValue=0)
    assert check_file(dicom, rules).as_dict() == check_file_full(dicom, rules).as_dict()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.one_of(st.none(), st.integers(132, 1400)),
       flips=st.lists(st.tuples(st.integers(132, 1300), st.integers(0, 255)), max_size=3))
def test_damaged_headers_identical(make_dicom, tmp_path, cut, flips):
    """Bytes changed or cut anywhere in a header: the fast reader decides exactly as the full
    parse, or leaves the file to it."""
    source = make_dicom("fuzz_src.dcm", pixels=np.zeros((512, 512), np.uint8))
    data = bytearray(source.read_bytes())
    for position, value in flips:
        data[position] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "fuzz.dcm"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(path)
