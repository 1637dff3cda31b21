"""The header rules engine: default chest rules, site rules, validation of rule files, PHI."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from cxr_device.runtime.header_check import FAIL, PASS, UNREADABLE, check_file
from cxr_device.runtime.input_rules import (
    ERROR,
    HIDDEN,
    WARNING,
    RulesError,
    load_rules,
)

from .conftest import pydicom_test_file, shared

RULES = load_rules()
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _findings(make_dicom, **header):
    result = check_file(make_dicom(**header), RULES)
    return result.status, {f.rule: f for f in result.findings}


def test_valid_synthetic_chest_passes_clean(make_dicom):
    assert _findings(make_dicom) == (PASS, {})


@pytest.mark.parametrize("header, rule, found, expected_words", [
    ({"Modality": "CT"}, "modality", "CT", "CR, DX"),
    ({"Modality": "MR"}, "modality", "MR", "CR, DX"),
    ({"Modality": "US"}, "modality", "US", "CR, DX"),
    ({"BodyPartExamined": "SKULL"}, "body-part", "SKULL", "CHEST"),
    ({"ViewPosition": "LL"}, "view-position", "LL", "AP, PA"),
    ({"ViewPosition": "LATERAL"}, "view-position", "LATERAL", "AP, PA"),
    ({"PatientAge": "006M"}, "patient-age", "006M", "1 to 95 years"),
    ({"PatientAge": "097Y"}, "patient-age", "097Y", "1 to 95 years"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, "sop-class", "1.2.840.10008.5.1.4.1.1.2", "1.2.840"),
])
@pytest.mark.requirement("REQ-DICOM-001")
def test_rejections_say_what_was_found_and_what_was_expected(make_dicom, header, rule, found, expected_words):
    status, findings = _findings(make_dicom, **header)
    assert status == FAIL
    finding = findings[rule]
    assert finding.severity == ERROR and finding.found == found
    assert f"'{found}'" in finding.message and expected_words in finding.message


@pytest.mark.requirement("REQ-DICOM-002")
def test_missing_attributes_are_named_findings(make_dicom):
    status, findings = _findings(make_dicom, BodyPartExamined=None, ViewPosition=None, Modality=None)
    assert status == FAIL
    for rule, tag in (("body-part", "(0018,0015)"), ("view-position", "(0018,5101)"), ("modality", "(0008,0060)")):
        assert findings[rule].found is None and "missing" in findings[rule].message and tag in findings[rule].message


def test_view_from_patient_position_when_view_position_absent(make_dicom):
    assert _findings(make_dicom, ViewPosition=None, PatientPosition="AP") == (PASS, {})
    status, findings = _findings(make_dicom, ViewPosition=None, PatientPosition="HFS")
    assert status == FAIL and findings["view-position"].attribute == "PatientPosition"


@pytest.mark.filterwarnings("ignore:.*Invalid value for VR:UserWarning")  # real exports break VR rules
@pytest.mark.parametrize("header", [
    {"photometric": "MONOCHROME1"}, {"bits_stored": 16}, {"PatientAge": "81"}, {"PatientAge": "045Y"},
    {"PatientAge": None}, {"BodyPartExamined": " thorax "}, {"ViewPosition": "ap"},
    {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1"},
])
def test_acceptable_variants_pass(make_dicom, header):
    assert _findings(make_dicom, **header)[0] == PASS


@pytest.mark.parametrize("header, rule", [
    ({"SOPClassUID": DX_PROCESSING}, "sop-class-for-processing"),
    ({"SOPClassUID": SECONDARY_CAPTURE}, "sop-class-secondary-capture"),
    ({"PresentationIntentType": "FOR PROCESSING"}, "presentation-intent"),
    pytest.param({"PatientAge": "about forty"}, "patient-age",
                 marks=pytest.mark.filterwarnings("ignore:.*VR AS:UserWarning")),
])
def test_warnings_are_listed_but_do_not_fail(make_dicom, header, rule):
    status, findings = _findings(make_dicom, **header)
    assert status == PASS and findings[rule].severity == WARNING


def test_rgb_16bit_multiframe_headers(make_dicom):
    status, findings = _findings(make_dicom, pixels=np.zeros((512, 512, 3), np.uint8))
    assert status == FAIL and {"samples-per-pixel", "photometric-interpretation"} <= set(findings)
    status, findings = _findings(make_dicom, pixels=np.zeros((2, 512, 512), np.uint8), NumberOfFrames=2)
    assert status == FAIL and "number-of-frames" in findings
    status, findings = _findings(make_dicom, pixels=np.zeros((64, 64), np.uint8))
    assert status == FAIL and {"rows", "columns"} <= set(findings)


def test_real_files(tmp_path):
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_UNCI.dcm"):
        assert check_file(shared("dicom", name), RULES, decode=True).status == PASS
    minimal = check_file(shared("dicom", "nih_dx_secondary_capture_minimal_header.dcm"), RULES)
    assert minimal.status == FAIL
    assert {f.rule for f in minimal.errors} == {"body-part", "view-position"}
    assert {f.rule for f in minimal.warnings} == {"sop-class-secondary-capture"}
    jpeg = check_file(shared("dicom", "siim_cr_chest_pa_jpeg_baseline.dcm"), RULES, decode=True)
    assert jpeg.status == PASS and [f.rule for f in jpeg.warnings] == ["sop-class-secondary-capture"]


@pytest.mark.requirement("REQ-DICOM-001")
@pytest.mark.parametrize("name, modality", [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_pydicom_negatives_are_rejected(name, modality):
    result = check_file(pydicom_test_file(name), RULES)
    assert result.status == FAIL
    modality_finding = next(f for f in result.errors if f.rule == "modality")
    assert modality_finding.found == modality


def test_site_rules_file(tmp_path, make_dicom):
    site = tmp_path / "site.yaml"
    site.write_text("""
name: site-a
rules:
  - id: only-dx
    attributes: [Modality]
    allowed: [DX]
    severity: error
    message: site A sends DX only
  - id: manufacturer-known
    attributes: [Manufacturer]
    allowed: [ACME]
    synonyms: {ACME CORP: ACME}
    severity: warning
""")
    rules = load_rules(site)
    assert rules.name == "site-a" and len(rules.sha256) == 64
    good = check_file(make_dicom(Manufacturer="acme corp"), rules)
    assert good.status == PASS and good.findings == []
    cr = check_file(make_dicom("cr.dcm", Modality="CR"), rules)
    assert cr.status == FAIL and "site A sends DX only" in cr.errors[0].message
    assert [f.severity for f in cr.findings] == [ERROR, WARNING]  # Manufacturer missing: a warning


@pytest.mark.parametrize("body, words", [
    ("rules: []", "non-empty 'rules'"),
    ("rules:\n  - {id: a, attributes: [Modality], allowed: [DX], colour: red}", "unknown key(s) colour"),
    ("rules:\n  - {id: a, attributes: [Modality], allowed: [DX], severity: fatal}", "severity must be"),
    ("rules:\n  - {id: a, attributes: [Modalty], allowed: [DX]}", "unknown DICOM keyword(s) Modalty"),
    ("rules:\n  - {id: a, attributes: [Rows], allowed: [1], range: {min: 1}}", "exactly one of"),
    ("rules:\n  - {id: a, attributes: [Rows], range: {min: 9, max: 1}}", "above max"),
    ("rules:\n  - {id: a, attributes: [Rows], range: {min: 1}}\n  - {id: a, attributes: [Rows], range: {min: 1}}",
     "duplicate rule id"),
    ("rules: [unclosed", "not a readable YAML"),
])
def test_bad_rules_files_are_refused_naming_the_rule(tmp_path, body, words):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert words in str(err.value) and "bad.yaml" in str(err.value)


@pytest.mark.requirement("REQ-DICOM-003")
def test_phi_values_hidden_unless_asked(tmp_path, make_dicom):
    path = tmp_path / "phi.yaml"
    path.write_text("rules:\n  - {id: name, attributes: [PatientName], allowed: [NOBODY]}\n")
    rules = load_rules(path)
    dicom = make_dicom()
    hidden = check_file(dicom, rules)
    assert hidden.findings[0].found == HIDDEN and "SYNTHETIC" not in hidden.findings[0].message
    assert not hidden.phi
    shown = check_file(dicom, rules, show_phi=True)
    assert "SYNTHETIC^PHANTOM" in shown.findings[0].message and shown.phi["patient_name"] == "SYNTHETIC^PHANTOM"


header_text = st.one_of(st.none(), st.text(max_size=20))
header_values = st.fixed_dictionaries({
    "Modality": header_text, "BodyPartExamined": header_text, "ViewPosition": header_text,
    "PatientPosition": header_text, "PatientAge": header_text, "PresentationIntentType": header_text,
    "PhotometricInterpretation": header_text, "SOPClassUID": header_text,
    "Rows": st.one_of(st.none(), st.integers(0, 65535)), "BitsStored": st.one_of(st.none(), st.integers(0, 65535)),
})


@pytest.mark.requirement("REQ-DICOM-002")
@pytest.mark.filterwarnings("ignore:.*VR:UserWarning")  # pydicom warns about the junk we set on purpose
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_values)
def test_rules_never_raise_on_arbitrary_header_values(values):
    ds = Dataset()
    for keyword, value in values.items():
        if value is not None:
            setattr(ds, keyword, value)
    findings = RULES.evaluate(ds)
    assert all(f.severity in (ERROR, WARNING) for f in findings)
    assert len({f.rule for f in findings}) == len(findings)  # each rule reports at most once


def test_unreadable_inputs(tmp_path):
    from PIL import Image

    png = tmp_path / "image.dcm"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, format="PNG")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    results = {p.name: check_file(p, RULES) for p in (png, empty, tmp_path / "missing.dcm")}
    assert all(r.status == UNREADABLE for r in results.values())
    assert "not a DICOM" in results["image.dcm"].reason and results["empty.dcm"].reason == "empty file"
    assert "not found" in results["missing.dcm"].reason
