"""The right patient, always: a DICOM result carries its source's patient and study identity byte for
byte (invalid values and every character set included), numbers its instances, lists its source in
its image library, and a source without a usable study or instance UID is never answered. Plus the
Secondary Capture's pixels (no file name, no header value) and the age gate of an age-gated
population."""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.charset import python_encoding
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from cxr_device.cli import main
from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.dicom_results import DeviceIdentity, score_to_dicom, write_results
from cxr_device.runtime.input_rules import load_rules
from cxr_device.runtime.pipeline import ACCEPTED, REFUSED, DevicePipeline, Prediction
from cxr_device.runtime.result_identity import SourceIdentity, identity_keywords, identity_tags
from cxr_device.runtime.study_record import STUDY_JSON
from cxr_device.synth_dicom import write_synthetic_dicom

from . import test_dicom_results as shared_fixtures
from .test_dicom_results import DCIODVFY, dciodvfy_errors, errors_not_from_source, read_sr, results_in

quick_bundle = shared_fixtures.quick_bundle
REPO = Path(__file__).resolve().parents[1]
PEDIATRIC_RULES = REPO / "fda_submission" / "profiles" / "pediatric_chest_radiograph_rules.yaml"
DEVICE = DeviceIdentity("test device", "0.0", "a" * 64, 0.5, "max_f1")
#: What a real RIS sends that the VRs do not allow (the PatientID is 76 characters: LO allows 64).
HOSTILE = {
    "PatientID": "MRN-" + "7" * 72,
    "PatientBirthDate": "1970-01-01",
    "AccessionNumber": "ACC-2026-000000000012345",
    "PatientWeight": "72.5",
    "PatientSize": "1.10",
    "StudyID": "S1",
    "IssuerOfPatientID": "HOSPITAL A",
    "ReferringPhysicianName": "Referrer^Robin^^Dr",
    "StudyDescription": "XR CHEST PA",
}


def _pixels(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((512, 512)) * 4095).astype(np.uint16)


def _source(folder: Path, name: str, seed: int = 0, **header) -> Path:
    header.setdefault("PatientAge", "004Y")
    return write_synthetic_dicom(folder / name, _pixels(seed), seed=seed, bits_stored=12, **header)


def _with_raw(path: Path, **raw: bytes) -> Path:
    """Rewrite ``path`` with some elements' exact bytes (as a RIS might send them)."""
    ds = pydicom.dcmread(path)
    for keyword, value in raw.items():
        tag = Tag(keyword)
        ds[tag] = RawDataElement(tag, pydicom.datadict.dictionary_VR(tag), len(value), value, 0, False, True)
    ds.save_as(path)
    return path


def _raw_identity(path: Path) -> dict[int, bytes | object]:
    """Every identity element (and the character set) of a file: raw bytes, or the value of a sequence."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = {}
    for tag in sorted(identity_tags() | {Tag("SpecificCharacterSet")}):
        if tag in ds:
            element = ds.get_item(tag)
            out[int(tag)] = element.value if element.VR != "SQ" else ds[tag].value
    return out


def _refused(path: Path) -> Prediction:
    """A refusal prediction for a file, as the pipeline hands it to the result writer."""
    ds = pydicom.dcmread(path)
    identity = SourceIdentity.capture(ds)
    return Prediction(str(path), REFUSED, sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                      study_instance_uid=str(ds.get("StudyInstanceUID", "")), dataset=ds, identity=identity,
                      findings=[{"rule": "test", "severity": "error", "message": "refused for the test"}],
                      reason="test: refused for the test")


# --- identity, byte for byte ------------------------------------------------------------------
def test_identity_keywords_cover_the_patient_general_study_and_patient_study_modules():
    named = {"PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence", "PatientBirthDate",
             "PatientSex", "PatientAge", "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyID", "StudyDate",
             "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence", "ReferringPhysicianName",
             "StudyDescription"}
    assert named <= set(identity_keywords())


@pytest.mark.requirement("REQ-NODE-003", "REQ-DICOM-003")
def test_sr_and_sc_carry_the_source_identity_byte_for_byte_invalid_values_included(quick_bundle, tmp_path, capsys):
    other_ids = pydicom.Dataset()
    other_ids.PatientID, other_ids.IssuerOfPatientID = "OTHER-1", "CLINIC B"
    issuer = pydicom.Dataset()
    issuer.LocalNamespaceEntityID = "RIS"
    source = _source(tmp_path, "hostile.dcm", seed=3, OtherPatientIDsSequence=[other_ids],
                     IssuerOfAccessionNumberSequence=[issuer], **HOSTILE)
    _with_raw(source, PatientName=b"Doe^Jane  ", StudyTime=b"101500.25 ")  # padding a re-encoder would drop
    out = tmp_path / "results"
    assert main(["predict", "--bundle", str(quick_bundle), str(source), "--dicom-out", str(out),
                 "--secondary-capture", "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert "PatientID" in err and "PatientBirthDate" in err and "AccessionNumber" in err  # counted by keyword
    assert HOSTILE["PatientID"] not in err and "Doe" not in err  # never a value
    expected = _raw_identity(source)
    assert expected[int(Tag("PatientName"))] == b"Doe^Jane  "
    for modality in ("SR", "OT"):  # OT: the Secondary Capture
        [result] = results_in(out, modality)
        assert _raw_identity(result) == expected, modality
    [sr] = results_in(out, "SR")
    assert pydicom.dcmread(sr).PatientWeight == 72.5  # numbers are kept, not dropped


@pytest.mark.requirement("REQ-NODE-003")
def test_each_result_series_numbers_its_instances_and_the_sr_lists_its_source(quick_bundle, tmp_path):
    study = pydicom.uid.generate_uid(entropy_srcs=["one study"])
    sources = [_source(tmp_path, f"s{i}.dcm", seed=10 + i, StudyInstanceUID=study, InstanceNumber=1)
               for i in range(3)]
    out = tmp_path / "results"
    _, written = score_to_dicom(DevicePipeline(load_bundle(quick_bundle)), sources, out, secondary_capture=True)
    for modality in ("SR", "OT"):  # OT: the Secondary Capture
        numbers = sorted(int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)
                         for p in results_in(out, modality))
        assert numbers == [1, 2, 3], modality
    for sr_path, source in zip((w.sr for w in written), sources):
        import highdicom as hd

        sr = hd.sr.srread(sr_path)
        library = [item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "111028"]
        assert library, "no Image Library"
        entries = [i for group in library[0].ContentSequence for i in group.ContentSequence if i.ValueType == "IMAGE"]
        referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in entries}
        assert referenced == {pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID}
        if DCIODVFY:
            assert dciodvfy_errors(sr_path) == []
    # a CR without ImagerPixelSpacing or PatientOrientation still gets its library entry
    cr = _source(tmp_path, "cr.dcm", seed=20, SOPClassUID="1.2.840.10008.5.1.4.1.1.1", ImagerPixelSpacing=None,
                 PatientOrientation=None)
    [record] = write_results([_refused(cr)], DEVICE, tmp_path / "cr-results")
    assert read_sr(record.sr)["referenced"].count(pydicom.dcmread(cr, stop_before_pixels=True).SOPInstanceUID) >= 2


#: A name in each character set (PS3.3 C.12.1.1.2) that pydicom decodes; ASCII where the set has no letters of its own.
_NAMES = {"100": "Müller^Jürgen", "101": "Dvořák^Zoë", "109": "Ħaġar", "110": "Žilinskas", "144": "Иванов^Иван",
          "127": "قباني^لنزار", "126": "Διονυσιος", "138": "שרון^דבורה", "148": "Çelik^Ayşe", "166": "ประเทศไทย",
          "203": "Dupont^Œdipe", "13": "ﾔﾏﾀﾞ^ﾀﾛｳ", "87": "山田^太郎", "159": "丂^丄", "149": "홍^길동",
          "58": "王^小明", "GB18030": "王^小明", "GBK": "王^小明", "192": "Wang^Xiaoming=王^小明"}


def _sample(term: str) -> str:
    for key, name in _NAMES.items():
        if term.endswith(f" {key}") or term.endswith(f"_{key}") or term == key:
            return name
    return "Doe^Jane"


@pytest.mark.requirement("REQ-NODE-003")
@pytest.mark.parametrize("term", sorted(t for t in python_encoding if t))
def test_every_character_set_pydicom_decodes_reaches_the_sr_unchanged(quick_bundle, tmp_path, term):
    charset = ["", term] if term.startswith("ISO 2022") and term != "ISO 2022 IR 6" else term
    name = _sample(term)
    try:
        source = _source(tmp_path, "charset.dcm", seed=5, SpecificCharacterSet=charset, PatientName=name)
    except (UnicodeError, LookupError, ValueError):  # a name this set cannot hold: an ASCII one still exercises it
        source = _source(tmp_path, "charset.dcm", seed=5, SpecificCharacterSet=charset, PatientName="Doe^Jane")
    [record] = write_results([_refused(source)], DEVICE, tmp_path / "results")
    assert not record.skipped
    assert _raw_identity(record.sr) == _raw_identity(source)
    assert str(pydicom.dcmread(record.sr).PatientName) == str(pydicom.dcmread(source).PatientName)


@pytest.mark.requirement("REQ-NODE-003")
def test_the_japanese_form_with_an_empty_first_value_is_answered_and_an_unknown_set_is_refused(quick_bundle,
                                                                                                tmp_path, capsys):
    japanese = _source(tmp_path, "ja.dcm", seed=6, SpecificCharacterSet=["", "ISO 2022 IR 87"],
                       PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう")
    unknown = _with_raw(_source(tmp_path, "xx.dcm", seed=7), SpecificCharacterSet=b"ISO_IR 999")
    out = tmp_path / "results"
    code = main(["predict", "--bundle", str(quick_bundle), str(japanese), str(unknown), "--dicom-out", str(out),
                 "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # the unknown set is refused
    status = {Path(f["path"]).name: f for f in report["files"]}
    assert status["ja.dcm"]["status"] == ACCEPTED
    assert status["xx.dcm"]["status"] == REFUSED and "specific-character-set" in status["xx.dcm"]["reason"]
    srs = {read_sr(p)["referenced"][0]: p for p in results_in(out, "SR")}
    refusal = read_sr(srs[pydicom.dcmread(unknown, stop_before_pixels=True).SOPInstanceUID])
    assert refusal["summary"] == ["111245"] and any("SpecificCharacterSet" in c for c in refusal["comments"])
    assert _raw_identity(srs[pydicom.dcmread(japanese, stop_before_pixels=True).SOPInstanceUID]) == \
        _raw_identity(japanese)


@pytest.mark.requirement("REQ-NODE-003")
@pytest.mark.parametrize("missing", [{"StudyInstanceUID": None}, {"StudyInstanceUID": ""},
                                     {"StudyInstanceUID": "not-a-uid"}, {"StudyInstanceUID": "1." + "2" * 70},
                                     {"SOPInstanceUID": "1.2.abc"}])
def test_a_source_without_a_usable_study_or_instance_uid_is_never_answered(tmp_path, missing):
    source = _source(tmp_path, "no-study.dcm", seed=8, **missing)
    [record] = write_results([_refused(source)], DEVICE, tmp_path / "results")
    assert record.skipped and record.sr is None
    assert "not-a-uid" not in record.skipped  # the reason never quotes the value
    assert not list((tmp_path / "results").rglob("*.dcm")) if (tmp_path / "results").exists() else True


_text = st.text(st.characters(codec="latin-1", exclude_characters="\\\x00"), max_size=90)


@pytest.mark.requirement("REQ-NODE-003")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patient_id=_text, birth_date=_text, study_id=_text, accession=_text,
       name=st.text(st.characters(codec="latin-1", exclude_characters="\\\x00"), max_size=70),
       weight=st.sampled_from(["72.5", "7e1", " 3", "-0", "abc", "1" * 20, ""]),
       study_uid=st.sampled_from(["", "1.2.3", "1.2.3.", "01.2", "x", "1." + "9" * 70, None]))
def test_any_hostile_identity_is_copied_verbatim_or_the_image_is_not_answered(tmp_path, patient_id, birth_date,
                                                                              study_id, accession, name, weight,
                                                                              study_uid):
    folder = tmp_path / uuid.uuid4().hex  # one folder per example: results of one never meet another's
    header = {"StudyInstanceUID": study_uid} if study_uid != "1.2.3" else {"StudyInstanceUID": "1.2.3"}
    source = _source(folder, "h.dcm", seed=9, SpecificCharacterSet="ISO_IR 100", PatientID="x", **header)
    raw = {"PatientID": patient_id, "PatientBirthDate": birth_date, "StudyID": study_id, "AccessionNumber": accession,
           "PatientName": name, "PatientWeight": weight}
    _with_raw(source, **{k: v.encode("latin-1") for k, v in raw.items()})
    [record] = write_results([_refused(source)], DEVICE, folder / "results")
    usable = study_uid not in ("", None, "1.2.3.", "x", "1." + "9" * 70)
    assert bool(record.skipped) is not usable
    if usable:
        assert _raw_identity(record.sr) == _raw_identity(source)
        for keyword, value in raw.items():  # counted invalid exactly when the VR refuses the value
            assert (keyword in record.invalid_identity) == (keyword in _invalid(keyword, value))


def _invalid(keyword: str, value: str) -> set[str]:
    from pydicom import config
    from pydicom.valuerep import validate_value

    vr = pydicom.datadict.dictionary_VR(keyword)
    try:
        for part in value.rstrip(" ").split("\\") if value.rstrip(" ") else []:
            validate_value(vr, part, config.RAISE)
    except ValueError:
        return {keyword}
    return set()


# --- the Secondary Capture's pixels ---------------------------------------------------------------
@pytest.mark.requirement("REQ-NODE-007", "REQ-DICOM-003")
def test_sc_pixels_are_identical_under_any_file_name(quick_bundle, tmp_path):
    source = _source(tmp_path, "plain.dcm", seed=11)
    renamed = tmp_path / "MRN123456_DOE_JANE" / "DOE^JANE_1970-01-01_chest.dcm"
    renamed.parent.mkdir()
    shutil.copy(source, renamed)
    pipeline = DevicePipeline(load_bundle(quick_bundle))
    pixels = []
    for path, out in ((source, tmp_path / "a"), (renamed, tmp_path / "b")):
        score_to_dicom(pipeline, [path], out, secondary_capture=True)
        [sc] = results_in(out, "OT")
        pixels.append(pydicom.dcmread(sc).PixelData)
    assert pixels[0] == pixels[1]


# --- the age gate -------------------------------------------------------------------------------
@pytest.mark.requirement("REQ-INPUT-003")
@pytest.mark.parametrize("age", [None, "", "ZZZY", "999Y", "12Y", "004Y"])
def test_an_age_gated_population_refuses_a_missing_or_unreadable_age_with_a_reason(age):
    rules = load_rules(PEDIATRIC_RULES)
    ds = pydicom.dcmread(write_synthetic_dicom(Path("/tmp") / f"age-{age}.dcm", _pixels(), PatientAge=age,
                                               bits_stored=12), stop_before_pixels=True)
    findings = [f for f in rules.evaluate(ds) if f.rule == "patient-age"]
    if age == "004Y":
        assert findings == []
    else:
        assert [f.severity for f in findings] == ["error"], age
        assert "1 to 5 years" in findings[0].message


@pytest.mark.requirement("REQ-INPUT-003")
def test_an_optional_age_rule_scores_an_unreadable_age_with_a_warning():
    rules = load_rules()  # the default rules declare age optional (the default profile says so)
    ds = pydicom.dcmread(write_synthetic_dicom(Path("/tmp") / "age-zzz.dcm", _pixels(), PatientAge="ZZZY",
                                               bits_stored=12), stop_before_pixels=True)
    assert [f.severity for f in rules.evaluate(ds) if f.rule == "patient-age"] == ["warning"]


@pytest.mark.requirement("REQ-INPUT-003")
def test_the_age_refusal_reaches_the_sr(tmp_path):
    import torch

    from cxr_device.models import ModelSpec, build_model
    from cxr_device.preprocessing import Preprocessing
    from cxr_device.runtime.bundle import write_bundle

    (tmp_path / "cohort.csv").write_text("image_id\n")
    torch.manual_seed(0)
    write_bundle(tmp_path / "bundle", build_model(ModelSpec(arch="small_cnn", weights="none")),
                 Preprocessing(image_size=32), {"value": 0.5, "rule": "max_f1"}, PEDIATRIC_RULES,
                 tmp_path / "cohort.csv")
    source = _source(tmp_path, "noage.dcm", seed=12, PatientAge=None)
    _, [record] = score_to_dicom(DevicePipeline(load_bundle(tmp_path / "bundle")), [source], tmp_path / "out")
    sr = read_sr(record.sr)
    assert sr["summary"] == ["111245"] and any(c.startswith("patient-age:") for c in sr["comments"])
    study = json.loads((record.sr.parent / STUDY_JSON).read_text())
    assert study["images"][0]["status"] == REFUSED and "patient-age" in study["images"][0]["refusal"]


def test_dciodvfy_sees_only_the_sources_own_invalid_values(tmp_path):
    if not DCIODVFY:
        pytest.skip("dciodvfy (dicom3tools) is not installed: apt-get install dicom3tools")
    source = _source(tmp_path, "bad-id.dcm", seed=13, **HOSTILE)
    [record] = write_results([_refused(source)], DEVICE, tmp_path / "results")
    assert errors_not_from_source(record.sr, source) == []
    assert any("0x0010,0x0020" in line for line in dciodvfy_errors(record.sr))  # the long PatientID, as sent
