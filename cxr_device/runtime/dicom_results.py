"""The device's answer as DICOM, written into the source study: a Structured Report for every
image it was given, and optionally a Secondary Capture of the Grad-CAM overlay.

**Why TID 1500 in a Comprehensive SR.** The result is a DICOM Comprehensive SR whose content is
the TID 1500 "Measurement Report" template, built with highdicom. TID 1500 is the template of
the IHE AI Results (AIR) profile and the one highdicom, dcmqi and OHIF read and write, so any
TID 1500 reader finds the finding, the numbers and the algorithm without knowing this device.
A free-form SR (MONAI Deploy's text SR operator writes one) reads well on a PACS screen but
cannot be read by machines; TID 1500 gives both, since a PACS shows its content tree as text.
Comprehensive SR is the IOD highdicom builds TID 1500 in, and every PACS stores it.

**Content of every SR** (coded with standard codes only)::

    Imaging Measurement Report (DCM 126000), TID 1500
      language, observer context: device observer (UID from the bundle hash, name, manufacturer,
        model = the locked device's name, serial number = device.json sha256)
      procedure reported: XR unspecified body region (LN 43468-8, CID 100)
      image library (TID 1600): the source image, with its modality, rows and columns, frame of
        reference, and for projection radiographs its patient orientation and imager pixel
        spacing when the source has them (TID 1603)
      Imaging Measurements > Measurement Group (TID 1501)
        tracking identifier and UID; finding: Pneumonia (SCT 233604007); finding site: Chest
        algorithm identification (TID 4019): device name, version, parameters
          "device.json sha256 <hash>" and "threshold <t> (<how it was chosen>)"
        accepted only: Probability (DCM 122157) = p [UCUM 1]; Threshold Value (DCM 122411) = t
          [UCUM 1]; qualitative evaluation Pneumonia = Present (SCT 52101004) / Absent
          (SCT 272519000): the decision, p >= t
        source image reference
      Qualitative Evaluations (UMLS C0034375)
        CAD Processing and Findings Summary (DCM 111017) = CID 6047: "All algorithms
          succeeded; with findings" (pneumonia) / "...; without findings" (no pneumonia) /
          "No algorithms succeeded; without findings" (refused or unreadable: not read)
        Comment (DCM 121106) TEXT: the decision in words, or "REFUSED ..." / "UNREADABLE ...",
          then one TEXT per error finding (rule id and message) or the unreadable reason

The SR is COMPLETE, UNVERIFIED (no person has checked it) and PRELIMINARY (an aid to the
radiologist's read, not a report).

**Where and under which UIDs.** Results go into the source study in new series: one SR series
and one SC series per study and locked device, their instances numbered 1, 2, ... in the order
the study's images are answered. Every attribute of the source's Patient, General Study and
Patient Study modules is copied byte for byte, invalid values included
(:mod:`~cxr_device.runtime.result_identity`); a source without a usable StudyInstanceUID or
SOPInstanceUID is not answerable (nothing says where its result belongs). UIDs are derived (``generate_uid(entropy_srcs=...)``) from
the source SOPInstanceUID, the StudyInstanceUID and the device.json sha256, so the same image
scored by the same device always gets the same result UIDs. That is deliberate: a re-sent image
is not answered twice (an existing result file is kept, not rewritten), a result that is sent
twice is the same instance to the receiver, and a crash between writing a result and recording
that it was written cannot create a second, different result. A *new* device (new bundle hash), a corrected image
(new SOPInstanceUID, as DICOM requires) or an image moved to another study gets a new result.
To answer an image again with the same device, delete its result file.

**The same UID again.** A source whose SOPInstanceUID was already answered in its study is a
``duplicate`` when its dataset is the same (same digest: the existing result stands) and a
``conflict`` when it is not: the second copy is never mixed into the first one's result or
record; it is reported (and, in the node, refused and quarantined).

Files: ``OUT/<StudyInstanceUID>/<SOPInstanceUID of the result>.dcm`` (SR and SC alike), written
atomically, and ``OUT/<StudyInstanceUID>/study.json`` (:mod:`~cxr_device.runtime.study_record`).
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..errors import CxrDeviceError
from ..library_warnings import LibraryWarnings
from . import study_record
from .atomic import atomic_write
from .pipeline import ACCEPTED, REFUSED, Prediction
from .result_identity import CHARSET, SourceIdentity, identity_tags, uid_problem
from .study_record import CONFLICT, DUPLICATE

MANUFACTURER = "cxr-device"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
SR_SERIES_DESCRIPTION = "cxr-device pneumonia result (AI, unverified)"
SC_SERIES_DESCRIPTION = "cxr-device Grad-CAM - NOT FOR PRIMARY DIAGNOSIS"
NOT_FOR_DIAGNOSIS = "NOT FOR PRIMARY DIAGNOSIS"
#: The text burned into the red band above every Secondary Capture (fixed: never a header value).
SC_BANNER = f"{NOT_FOR_DIAGNOSIS} - Grad-CAM ({MANUFACTURER})"

PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
PRESENT, ABSENT = Code("52101004", "SCT", "Present"), Code("272519000", "SCT", "Absent")
PROBABILITY = Code("122157", "DCM", "Probability")
THRESHOLD = Code("122411", "DCM", "Threshold Value")
NO_UNITS = Code("1", "UCUM", "no units")
CHEST = Code("816094009", "SCT", "Chest")
PROCEDURE = Code("43468-8", "LN", "XR unspecified body region")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
SUMMARY = Code("111017", "DCM", "CAD Processing and Findings Summary")
WITH_FINDINGS = Code("111242", "DCM", "All algorithms succeeded; with findings")
WITHOUT_FINDINGS = Code("111241", "DCM", "All algorithms succeeded; without findings")
NOT_READ = Code("111245", "DCM", "No algorithms succeeded; without findings")
COMMENT = Code("121106", "DCM", "Comment")
#: Patient / study attributes highdicom reads from the source (Type 2): given empty to the
#: builder, then replaced by the source's own elements (:class:`SourceIdentity`).
_TYPE2_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")
#: What the image library entry describes (TID 1602/1603), when the source has it.
_LIBRARY_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "Rows", "Columns", "FrameOfReferenceUID")
_PROJECTION = ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")


class ResultError(CxrDeviceError):
    """A result cannot be written for this input (the message says why)."""


@dataclass(frozen=True)
class DeviceIdentity:
    """What the results say about the device that produced them."""

    name: str
    version: str
    bundle_sha256: str
    threshold: float
    threshold_rule: str

    @classmethod
    def from_bundle(cls, bundle) -> DeviceIdentity:
        """The identity of a loaded :class:`~cxr_device.runtime.bundle.Bundle`."""
        meta = bundle.meta
        return cls(str(meta.get("device", "cxr-device")), str(meta.get("package_version", "")),
                   bundle.device_sha256, float(bundle.threshold), str(meta["threshold"].get("rule", "")))

    @property
    def observer_uid(self) -> str:
        """The device observer UID: one per locked device."""
        return generate_uid(entropy_srcs=["cxr-device observer", self.bundle_sha256])


@dataclass(frozen=True)
class ResultUIDs:
    """The UIDs of the results for one source image (deterministic, see the module notes)."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str
    tracking: str


def result_uids(source_sop_uid: str, study_uid: str, bundle_sha256: str) -> ResultUIDs:
    """Result UIDs from the source image, its study and the device: same inputs, same UIDs."""
    def uid(*parts: str) -> str:
        return generate_uid(entropy_srcs=["cxr-device", *parts])

    return ResultUIDs(uid("SR series", study_uid, bundle_sha256),
                      uid("SR", source_sop_uid, study_uid, bundle_sha256),
                      uid("SC series", study_uid, bundle_sha256),
                      uid("SC", source_sop_uid, study_uid, bundle_sha256),
                      uid("tracking", source_sop_uid, study_uid, bundle_sha256))


@dataclass
class WrittenResult:
    """What was written (or found already written) for one input."""

    source_sop_instance_uid: str
    study_instance_uid: str
    status: str
    sr: Path | None = None
    sc: Path | None = None
    existed: bool = False  # the same content was answered before (a re-sent or re-run image): kept as is
    conflict: bool = False  # other content was answered under this SOPInstanceUID: nothing written
    skipped: str = ""  # why no result could be written (no parsable dataset, no usable identifiers)
    invalid_identity: list[str] = field(default_factory=list)  # keywords copied although invalid for their VR
    library_warnings: int = 0  # warnings pydicom / highdicom gave while building (values withheld)


def study_folder_name(study_uid: str) -> str:
    """The folder of a study: its UID (only answerable images, whose StudyInstanceUID is a UID,
    get one)."""
    return str(study_uid).strip("\0 ")


def answerable(prediction: Prediction) -> str:
    """'' when a result can be written for this prediction, else why not (no value quoted)."""
    ds = prediction.dataset
    if ds is None:
        return "no parsable DICOM dataset: nothing identifies the study to answer into"
    problems = [p for p in (uid_problem(ds, "StudyInstanceUID"), uid_problem(ds, "SOPInstanceUID")) if p]
    if problems:
        return f"{'; '.join(problems)}: a result could not be filed under it and reference it"
    if not str(ds.get("SOPClassUID", "")).strip():
        return "the dataset has no SOPClassUID: the result could not reference it"
    if str(ds.SOPClassUID) not in _known_sop_classes():
        return f"SOP class {ds.SOPClassUID} is not a standard storage class: the result could not reference it"
    return ""


def _known_sop_classes() -> frozenset[str]:
    """The SOP classes highdicom can copy patient and study modules from (its IOD table)."""
    from highdicom._standard_utils import get_sop_class_iod_map

    return frozenset(get_sop_class_iod_map())


def _identity(prediction: Prediction) -> SourceIdentity:
    """The identity captured when the source was parsed (else taken from the dataset now)."""
    return prediction.identity if prediction.identity is not None else SourceIdentity.capture(prediction.dataset)


def _evidence(ds: Dataset) -> Dataset:
    """The source header as the builders get it: every top-level attribute but the pixels, the
    identity attributes and the character set; the Type 2 ones the builders read given empty.
    The real identity is put back afterwards, byte for byte (:meth:`SourceIdentity.apply`)."""
    evidence, identity = Dataset(), identity_tags()
    for tag in ds.keys():
        if tag.group < 0x7FE0 and tag not in identity and tag != CHARSET:
            evidence.add(ds[tag])
    for keyword in _TYPE2_SOURCE:
        setattr(evidence, keyword, "")
    evidence.StudyInstanceUID = str(ds.StudyInstanceUID).strip("\0 ")
    return evidence


def _library_view(source: Dataset) -> Dataset:
    """What the image library entry says of the source: rows, columns and frame of reference,
    and a projection radiograph's orientation and imager pixel spacing when it has both."""
    view = Dataset()
    for keyword in _LIBRARY_KEYWORDS:
        if source.get(keyword) not in (None, ""):
            setattr(view, keyword, source.get(keyword))
    orientation = [str(v) for v in (source.get("PatientOrientation") or [])]
    spacing = source.get("ImagerPixelSpacing")
    projection = str(source.get("Modality", "")) in _PROJECTION and len(orientation) == 2 \
        and all(orientation) and spacing is not None and len(spacing) == 2
    view.Modality = str(source.Modality) if projection else "OT"  # OT: the TID 1602 descriptors only
    if projection:
        view.PatientOrientation, view.ImagerPixelSpacing = orientation, spacing
    return view


def build_sr(prediction: Prediction, device: DeviceIdentity, instance_number: int = 1,
             warned: LibraryWarnings | None = None):
    """The TID 1500 Comprehensive SR for one prediction (see the module notes)."""
    with warned or LibraryWarnings() as _:
        return _build_sr(prediction, device, instance_number)


def _build_sr(prediction: Prediction, device: DeviceIdentity, instance_number: int):
    import highdicom as hd

    reason = answerable(prediction)
    if reason:
        raise ResultError(reason)
    ds = prediction.dataset
    source = _evidence(ds)
    uids = result_uids(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), device.bundle_sha256)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device.observer_uid, name=MANUFACTURER, manufacturer_name=f"{MANUFACTURER} contributors",
            model_name=device.name, serial_number=device.bundle_sha256))
    algorithm = hd.sr.AlgorithmIdentification(
        name=device.name, version=device.version or "unknown",
        parameters=[f"device.json sha256 {device.bundle_sha256}",
                    f"threshold {device.threshold:.6g} ({device.threshold_rule or 'locked'})"])
    image = hd.sr.SourceImageForMeasurementGroup(str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    measurements, evaluations = [], []
    if prediction.status == ACCEPTED:
        measurements = [hd.sr.Measurement(name=PROBABILITY, value=float(prediction.probability), unit=NO_UNITS,
                                          algorithm_id=algorithm),
                        hd.sr.Measurement(name=THRESHOLD, value=float(prediction.threshold), unit=NO_UNITS)]
        evaluations = [hd.sr.QualitativeEvaluation(PNEUMONIA, PRESENT if _positive(prediction) else ABSENT)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.tracking, identifier="cxr-device pneumonia"),
        finding_type=PNEUMONIA, finding_sites=[hd.sr.FindingSite(CHEST)], algorithm_id=algorithm,
        measurements=measurements or None, qualitative_evaluations=evaluations or None, source_images=[image])
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE, imaging_measurements=[group], referenced_images=[_library_view(ds)])
    report[0].ContentSequence.append(_qualitative_evaluations(prediction))
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=uids.sr_series, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr_instance, instance_number=instance_number, manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=device.name[:64], software_versions=device.version or "unknown",
        device_serial_number=device.bundle_sha256[:64], specific_character_set=None)
    _identity(prediction).apply(sr)
    return sr


def _positive(prediction: Prediction) -> bool:
    return prediction.probability is not None and prediction.probability >= prediction.threshold


def _qualitative_evaluations(prediction: Prediction):
    """TID 1500's report-level Qualitative Evaluations: the CID 6047 summary and the words."""
    import highdicom as hd

    contains = hd.sr.RelationshipTypeValues.CONTAINS
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=contains)
    if prediction.status == ACCEPTED:
        summary = WITH_FINDINGS if _positive(prediction) else WITHOUT_FINDINGS
        texts = [f"{prediction.decision} (probability {prediction.probability:.3f}, locked threshold "
                 f"{prediction.threshold:.3f}; pneumonia when probability >= threshold). The device's output is an "
                 "aid to interpretation, not a diagnosis."]
    else:
        summary = NOT_READ
        word = "REFUSED by the device's input rules" if prediction.status == REFUSED else "UNREADABLE"
        texts = [f"{word}: the device did not read this image; no probability was computed."]
        errors = [f for f in prediction.findings if f.get("severity") == "error"]
        texts += [f"{f['rule']}: {f['message']}" for f in errors] or [prediction.reason or prediction.status]
    items = [hd.sr.CodeContentItem(name=SUMMARY, value=summary, relationship_type=contains)]
    items += [hd.sr.TextContentItem(name=COMMENT, value=text, relationship_type=contains) for text in texts]
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


# --- the optional Secondary Capture ---------------------------------------------------------
def build_secondary_capture(prediction: Prediction, device: DeviceIdentity, overlay: str | Path,
                            instance_number: int = 1, warned: LibraryWarnings | None = None):
    """An RGB Secondary Capture of the Grad-CAM overlay PNG with "NOT FOR PRIMARY DIAGNOSIS"
    burned in (BurnedInAnnotation YES), in the source study. Its pixels are the image, the map
    and fixed text only: never a file name or a header value."""
    with warned or LibraryWarnings() as _:
        return _build_secondary_capture(prediction, device, overlay, instance_number)


def _build_secondary_capture(prediction: Prediction, device: DeviceIdentity, overlay: str | Path,
                             instance_number: int):
    import highdicom as hd

    reason = answerable(prediction)
    if reason:
        raise ResultError(reason)
    ds = prediction.dataset
    source = _evidence(ds)
    source.SOPInstanceUID, source.SOPClassUID = str(ds.SOPInstanceUID).strip("\0 "), ds.SOPClassUID
    uids = result_uids(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), device.bundle_sha256)
    pixels = _bannered(Path(overlay))
    orientation = [str(v) for v in (ds.get("PatientOrientation") or [])]
    known = len(orientation) == 2 and all(v and set(v) <= set("LRAPHF") for v in orientation)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=uids.sc_series, series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance, instance_number=instance_number, manufacturer=MANUFACTURER,
        patient_orientation=tuple(orientation) if known else ("L", "F"), series_description=SC_SERIES_DESCRIPTION,
        manufacturer_model_name=device.name[:64], software_versions=device.version or "unknown",
        transfer_syntax_uid="1.2.840.10008.1.2.1", specific_character_set=None)
    if not known:
        sc.PatientOrientation = ""  # Type 2: unknown, not invented
    note = (f"{NOT_FOR_DIAGNOSIS}. Grad-CAM overlay of {device.name} {device.version} "
            f"(device.json sha256 {device.bundle_sha256[:16]}...): where the model looked; an aid to "
            "interpretation, not a diagnosis and not a localisation.")
    if ds.get("BodyPartExamined"):  # the chest is unpaired: Laterality stays absent
        sc.BodyPartExamined = ds.BodyPartExamined
    if ds.get("Laterality") or not ds.get("BodyPartExamined"):
        sc.Laterality = ds.get("Laterality", "")  # Type 2C: copied, or empty when nothing is known
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"
    sc.ImageComments = note
    sc.DerivationDescription = note[:1024]
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = ds.SOPClassUID, source.SOPInstanceUID
    sc.SourceImageSequence = [reference]
    _identity(prediction).apply(sc)
    return sc


def _bannered(path: Path) -> np.ndarray:
    """The overlay PNG as RGB uint8 with a red "NOT FOR PRIMARY DIAGNOSIS" band above it."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    try:
        font = ImageFont.load_default(size=max(14, image.width // 32))
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    band = max(24, image.width // 20)
    canvas = Image.new("RGB", (image.width, image.height + band), (170, 0, 0))
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text((8, band // 6), SC_BANNER, fill="white", font=font)
    return np.asarray(canvas, dtype=np.uint8)


# --- writing --------------------------------------------------------------------------------
def score_to_dicom(pipeline, inputs: list, out_dir: str | Path, secondary_capture: bool = False,
                   heatmap_dir: Path | None = None, chunk: int = 64, received: dict[str, dict] | None = None,
                   **run_options) -> tuple[list[Prediction], list[WrittenResult]]:
    """Score ``inputs`` with a :class:`~cxr_device.runtime.pipeline.DevicePipeline` and write
    their DICOM results (:func:`write_results`), ``chunk`` inputs at a time so that parsed
    datasets do not pile up in memory. Grad-CAM maps for the Secondary Captures go to
    ``heatmap_dir`` when given, else to a temporary folder removed at the end. ``received``:
    per input path, what the node knows of its receipt (``received_at``, ``source_sha256``).
    The predictions are returned without their datasets."""
    device = DeviceIdentity.from_bundle(pipeline.bundle)
    predictions: list[Prediction] = []
    written: list[WrittenResult] = []
    with tempfile.TemporaryDirectory(prefix="cxr-device-gradcam-") as scratch:
        maps = heatmap_dir if heatmap_dir is not None else (Path(scratch) if secondary_capture else None)
        for start in range(0, len(inputs), chunk):
            part = pipeline.run(list(inputs[start:start + chunk]), heatmap_dir=maps, keep_datasets=True,
                                **run_options)
            written += write_results(part, device, out_dir, secondary_capture, received)
            for prediction in part:
                prediction.dataset = prediction.identity = None
                if heatmap_dir is None:
                    prediction.heatmap = ""
            predictions += part
    return predictions, written


def write_results(predictions: list[Prediction], device: DeviceIdentity, out_dir: str | Path,
                  secondary_capture: bool = False, received: dict[str, dict] | None = None) -> list[WrittenResult]:
    """Write the SR (and, with ``secondary_capture``, the SC of accepted images that have a
    heat map) of every prediction under ``out_dir/<StudyInstanceUID>/`` and record the answer
    in the study's ``study.json``. A SOPInstanceUID answered before is a duplicate (same
    content: the existing result stands) or a conflict (other content: nothing is written or
    recorded for it). Inputs that cannot be answered are listed with the reason (``skipped``).
    One entry per input."""
    out = Path(out_dir)
    return [_write_one(p, device, out, secondary_capture, (received or {}).get(p.path, {})) for p in predictions]


def _write_one(prediction: Prediction, device: DeviceIdentity, out: Path, secondary_capture: bool,
               receipt: dict) -> WrittenResult:
    ds = prediction.dataset
    record = WrittenResult(prediction.sop_instance_uid, prediction.study_instance_uid, prediction.status)
    record.skipped = answerable(prediction)
    if record.skipped:
        return record
    sop, study = str(ds.SOPInstanceUID).strip("\0 "), str(ds.StudyInstanceUID).strip("\0 ")
    folder = out / study_folder_name(study)
    digest = receipt.get("source_sha256") or (study_record.file_digest(prediction.path)
                                              if Path(prediction.path).is_file() else None)
    known = study_record.lookup(folder, sop, digest)
    uids = result_uids(sop, study, device.bundle_sha256)
    if known.state == CONFLICT:
        record.conflict = True
        study_record.record_conflict(folder, study, {"sop_instance_uid": sop, "source_sha256": digest,
                                                     "at": study_record.utc_now(),
                                                     "kept": "the first copy's result"})
        return record
    identity = _identity(prediction)
    record.invalid_identity = identity.invalid_keywords()
    if known.state == DUPLICATE:
        record.existed = True
        record.sr = folder / known.entry["sr"] if known.entry.get("sr") else None
        record.sc = folder / known.entry["sc"] if known.entry.get("sc") else None
        return record
    sr_number, sc_number = study_record.next_instance_numbers(folder)
    warned = LibraryWarnings()
    record.sr, record.existed = _write_once(folder / f"{uids.sr_instance}.dcm",
                                            lambda: build_sr(prediction, device, sr_number, warned))
    sc_written = False
    if secondary_capture and prediction.status == ACCEPTED and prediction.heatmap:
        record.sc, existed = _write_once(
            folder / f"{uids.sc_instance}.dcm",
            lambda: build_secondary_capture(prediction, device, prediction.heatmap, sc_number, warned))
        sc_written = not existed
    record.library_warnings = warned.count
    study_record.record_answer(folder, study, {
        "sop_instance_uid": sop, "status": prediction.status, "view": str(ds.get("ViewPosition", "") or ""),
        "probability": prediction.probability, "decision": prediction.decision,
        "refusal": None if prediction.status == ACCEPTED else _refusal(prediction),
        "sr": record.sr.name, "sr_instance_number": sr_number,
        "sc": record.sc.name if record.sc else None, "sc_instance_number": sc_number if sc_written else None,
        "source_sha256": digest, "received_at": receipt.get("received_at"),
        "answered_at": study_record.utc_now(), "invalid_identity_values": record.invalid_identity,
        **_origin(ds, device, receipt)})
    return record


def _origin(ds, device: DeviceIdentity, receipt: dict) -> dict:
    """What study.json records of where an image came from and when, beside its answer: the
    sender's AE title (the node's receipt), the equipment (Manufacturer, ManufacturerModelName:
    not patient data), the device that answered, and the monotonic times (:mod:`study_record`)."""
    received = receipt.get("monotonic")
    return {"calling_ae": _text(receipt.get("calling_ae")), "manufacturer": _header_text(ds, "Manufacturer"),
            "model_name": _header_text(ds, "ManufacturerModelName"), "device_sha256": device.bundle_sha256,
            "notified_by": receipt.get("notified_by"),
            "received_monotonic": None if received is None else round(float(received), 6),
            "answered_monotonic": study_record.monotonic_now(), "monotonic_clock": study_record.monotonic_clock()}


def _header_text(ds, keyword: str) -> str | None:
    """A header value as text (:func:`_text`); a value pydicom cannot read is not recorded (None),
    never a reason to leave an image unanswered."""
    try:
        return _text(ds.get(keyword))
    except Exception:  # noqa: BLE001 - a malformed element of the equipment module
        return None


def _text(value, limit: int = 64) -> str | None:
    """A short value as text, at most ``limit`` characters (an LO value's length); None when absent
    or empty."""
    if value is None:
        return None
    text = str(value).strip("\0 ")[:limit]
    return text or None


def _refusal(prediction: Prediction) -> str:
    """Why an image was not read, by rule ids (header values stay in the SR, not in study.json)."""
    errors = [f["rule"] for f in prediction.findings if f.get("severity") == "error"]
    return f"{prediction.status}: " + (", ".join(errors) if errors else (prediction.reason.split(":")[0][:80]
                                                                         or prediction.status))


def written_line(written: list[WrittenResult], out_dir: str | Path) -> str:
    """``DICOM results in DIR: 3 SR, 1 SC written, 1 already there; 1 input not answerable``."""
    new = [w for w in written if w.sr and not w.existed]
    kept = sum(w.existed for w in written)
    sc = sum(w.sc is not None for w in new)
    skipped = sum(bool(w.skipped) for w in written)
    conflicts = sum(w.conflict for w in written)
    invalid = sorted({k for w in written for k in w.invalid_identity})
    line = f"DICOM results in {out_dir}: {len(new)} SR, {sc} SC written, {kept} already there"
    if skipped:
        line += f"; {skipped} input(s) not answerable (no result: see the report's reasons)"
    if conflicts:
        line += (f"; {conflicts} input(s) reuse a SOPInstanceUID already answered with other content: not answered "
                 "(see study.json 'conflicts')")
    if invalid:
        line += (f"; identity values invalid for their VR copied verbatim (values not shown): {', '.join(invalid)}")
    return line


def _write_once(path: Path, build) -> tuple[Path, bool]:
    """Write ``build()`` to ``path`` atomically unless it exists; (path, existed)."""
    if path.exists():
        return path, True
    dataset = build()
    buffer = io.BytesIO()
    with LibraryWarnings():
        dataset.save_as(buffer, enforce_file_format=True)
    atomic_write(path, buffer.getvalue())
    return path, False
