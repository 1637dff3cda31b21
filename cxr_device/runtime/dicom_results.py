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
      image library: the source image (left out when the source header lacks what its
        descriptors need, e.g. ImagerPixelSpacing; the group's source image still references it)
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

**Where and under which UIDs.** Results go into the source study (same StudyInstanceUID;
the Patient and Study modules copied from the source) in new series: one SR series and one SC
series per study and locked device. UIDs are derived (``generate_uid(entropy_srcs=...)``) from
the source SOPInstanceUID, the StudyInstanceUID and the device.json sha256, so the same image
scored by the same device always gets the same result UIDs. That is deliberate: a re-sent image
is not answered twice (an existing result file is kept, not rewritten), a result that is sent
twice is the same instance to the receiver, and a crash between writing a result and recording
that it was written cannot create a second, different result. A *new* device (new bundle hash), a corrected image
(new SOPInstanceUID, as DICOM requires) or an image moved to another study gets a new result.
To answer an image again with the same device, delete its result file.

Files: ``OUT/<StudyInstanceUID>/<SOPInstanceUID of the result>.dcm`` (SR and SC alike), written
atomically, and ``OUT/<StudyInstanceUID>/study.json``: each image's status and result, and the
study's chosen frontal image (:func:`choose_study_image`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..errors import CxrDeviceError
from .header_check import UNREADABLE
from .pipeline import ACCEPTED, REFUSED, Prediction

MANUFACTURER = "cxr-device"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
SR_SERIES_DESCRIPTION = "cxr-device pneumonia result (AI, unverified)"
SC_SERIES_DESCRIPTION = "cxr-device Grad-CAM - NOT FOR PRIMARY DIAGNOSIS"
NOT_FOR_DIAGNOSIS = "NOT FOR PRIMARY DIAGNOSIS"
STUDY_JSON = "study.json"
STUDY_RULE = ("the accepted image with ViewPosition PA, else AP, else any accepted image; ties broken by the "
              "lowest SOPInstanceUID (compared number by number)")

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
#: Patient / study attributes highdicom reads from the source; Type 2, so empty when absent.
_TYPE2_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


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
    existed: bool = False  # the result was already there (a re-sent or re-run image): kept as is
    skipped: str = ""  # why no result could be written (no parsable dataset, no identifiers)


def study_folder_name(study_uid: str) -> str:
    """The folder of a study: its UID when it is a well-formed UID, else ``study-<sha256[:16]>``."""
    if len(study_uid) <= 64 and _UID.fullmatch(study_uid):
        return study_uid
    return "study-" + hashlib.sha256(study_uid.encode()).hexdigest()[:16]


def answerable(prediction: Prediction) -> str:
    """'' when a result can be written for this prediction, else why not."""
    ds = prediction.dataset
    if ds is None:
        return "no parsable DICOM dataset: nothing identifies the study to answer into"
    missing = [k for k in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID") if not str(ds.get(k, "")).strip()]
    if missing:
        return f"the dataset has no {', '.join(missing)}: the result could not reference it"
    if str(ds.SOPClassUID) not in _known_sop_classes():
        return f"SOP class {ds.SOPClassUID} is not a standard storage class: the result could not reference it"
    return ""


def _known_sop_classes() -> frozenset[str]:
    """The SOP classes highdicom can copy patient and study modules from (its IOD table)."""
    try:
        from highdicom._standard_utils import get_sop_class_iod_map
    except ImportError:  # a private helper: if it moves, let highdicom itself decide
        from pydicom.uid import UID_dictionary

        return frozenset(UID_dictionary)
    return frozenset(get_sop_class_iod_map())


def _evidence(ds: Dataset) -> Dataset:
    """The source header the results copy from: every top-level attribute but the pixels;
    values invalid for their VR dropped (emptied for the Type 2 patient and study attributes,
    UIDs kept); those Type 2 attributes present (empty when the source lacks them)."""
    evidence = Dataset()
    for element in ds:
        if element.tag.group < 0x7FE0 and element.keyword != "PixelData":
            evidence.add(element)
    for element in list(evidence):  # an invalid value would make the result invalid too
        if element.VR != "SQ" and not element.keyword.endswith("UID") and not _valid(element):
            if element.keyword in _TYPE2_SOURCE:
                evidence[element.tag].value = ""
            else:
                del evidence[element.tag]
    for keyword in _TYPE2_SOURCE:
        if keyword not in evidence:
            setattr(evidence, keyword, "")
    return evidence


def _valid(element) -> bool:
    from pydicom import config
    from pydicom.valuerep import validate_value

    try:
        values = element.value if element.VM > 1 else [element.value]
        for value in values:
            validate_value(element.VR, value, config.RAISE)
    except Exception:  # noqa: BLE001 - any failure means "not a value to copy"
        return False
    return True


@contextmanager
def _quiet():
    """highdicom and pydicom warn about odd source values (a one-part PatientName, ...) and quote
    them: patient data must not reach a terminal or a log, and the values are copied verbatim
    on purpose (they must match the PACS's record)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def build_sr(prediction: Prediction, device: DeviceIdentity):
    """The TID 1500 Comprehensive SR for one prediction (see the module notes)."""
    with _quiet():
        return _build_sr(prediction, device)


def _build_sr(prediction: Prediction, device: DeviceIdentity):
    import highdicom as hd

    reason = answerable(prediction)
    if reason:
        raise ResultError(reason)
    source = _evidence(prediction.dataset)
    uids = result_uids(str(source.SOPInstanceUID), str(source.StudyInstanceUID), device.bundle_sha256)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device.observer_uid, name=MANUFACTURER, manufacturer_name=f"{MANUFACTURER} contributors",
            model_name=device.name, serial_number=device.bundle_sha256))
    algorithm = hd.sr.AlgorithmIdentification(
        name=device.name, version=device.version or "unknown",
        parameters=[f"device.json sha256 {device.bundle_sha256}",
                    f"threshold {device.threshold:.6g} ({device.threshold_rule or 'locked'})"])
    image = hd.sr.SourceImageForMeasurementGroup(str(source.SOPClassUID), str(source.SOPInstanceUID))
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
    context = hd.sr.ObservationContext(observer_device_context=observer)
    try:  # the image library's descriptors come from the source header (orientation, spacing...)
        report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=PROCEDURE,
                                         imaging_measurements=[group], referenced_images=[source])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):  # a header that lacks them
        report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=PROCEDURE,
                                         imaging_measurements=[group])
    report[0].ContentSequence.append(_qualitative_evaluations(prediction))
    return hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=uids.sr_series, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr_instance, instance_number=_instance_number(source), manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=device.name[:64], software_versions=device.version or "unknown",
        device_serial_number=device.bundle_sha256[:64])


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


def _instance_number(source: Dataset) -> int:
    try:
        return max(1, int(source.get("InstanceNumber") or 1))
    except (TypeError, ValueError):
        return 1


# --- the optional Secondary Capture ---------------------------------------------------------
def build_secondary_capture(prediction: Prediction, device: DeviceIdentity, overlay: str | Path):
    """An RGB Secondary Capture of the Grad-CAM overlay PNG with "NOT FOR PRIMARY DIAGNOSIS"
    burned in (BurnedInAnnotation YES), in the source study."""
    with _quiet():
        return _build_secondary_capture(prediction, device, overlay)


def _build_secondary_capture(prediction: Prediction, device: DeviceIdentity, overlay: str | Path):
    import highdicom as hd

    reason = answerable(prediction)
    if reason:
        raise ResultError(reason)
    source = _evidence(prediction.dataset)
    uids = result_uids(str(source.SOPInstanceUID), str(source.StudyInstanceUID), device.bundle_sha256)
    pixels = _bannered(Path(overlay))
    orientation = [str(v) for v in (source.get("PatientOrientation") or [])]
    known = len(orientation) == 2 and all(v and set(v) <= set("LRAPHF") for v in orientation)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=uids.sc_series, series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance, instance_number=_instance_number(source), manufacturer=MANUFACTURER,
        patient_orientation=tuple(orientation) if known else ("L", "F"), series_description=SC_SERIES_DESCRIPTION,
        manufacturer_model_name=device.name[:64], software_versions=device.version or "unknown",
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    if not known:
        sc.PatientOrientation = ""  # Type 2: unknown, not invented
    note = (f"{NOT_FOR_DIAGNOSIS}. Grad-CAM overlay of {device.name} {device.version} "
            f"(device.json sha256 {device.bundle_sha256[:16]}...): where the model looked; an aid to "
            "interpretation, not a diagnosis and not a localisation.")
    if source.get("BodyPartExamined"):  # the chest is unpaired: Laterality stays absent
        sc.BodyPartExamined = source.BodyPartExamined
    if source.get("Laterality") or not source.get("BodyPartExamined"):
        sc.Laterality = source.get("Laterality", "")  # Type 2C: copied, or empty when nothing is known
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"
    sc.ImageComments = note
    sc.DerivationDescription = note[:1024]
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    sc.SourceImageSequence = [reference]
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
    ImageDraw.Draw(canvas).text((8, band // 6), f"{NOT_FOR_DIAGNOSIS} - Grad-CAM (cxr-device)", fill="white",
                                font=font)
    return np.asarray(canvas, dtype=np.uint8)


# --- writing --------------------------------------------------------------------------------
def score_to_dicom(pipeline, inputs: list, out_dir: str | Path, secondary_capture: bool = False,
                   heatmap_dir: Path | None = None, chunk: int = 64,
                   **run_options) -> tuple[list[Prediction], list[WrittenResult]]:
    """Score ``inputs`` with a :class:`~cxr_device.runtime.pipeline.DevicePipeline` and write
    their DICOM results (:func:`write_results`), ``chunk`` inputs at a time so that parsed
    datasets do not pile up in memory. Grad-CAM maps for the Secondary Captures go to
    ``heatmap_dir`` when given, else to a temporary folder removed at the end. The predictions
    are returned without their datasets."""
    device = DeviceIdentity.from_bundle(pipeline.bundle)
    predictions: list[Prediction] = []
    written: list[WrittenResult] = []
    with tempfile.TemporaryDirectory(prefix="cxr-device-gradcam-") as scratch:
        maps = heatmap_dir if heatmap_dir is not None else (Path(scratch) if secondary_capture else None)
        for start in range(0, len(inputs), chunk):
            part = pipeline.run(list(inputs[start:start + chunk]), heatmap_dir=maps, keep_datasets=True,
                                **run_options)
            written += write_results(part, device, out_dir, secondary_capture)
            for prediction in part:
                prediction.dataset = None
                if heatmap_dir is None:
                    prediction.heatmap = ""
            predictions += part
    return predictions, written


def write_results(predictions: list[Prediction], device: DeviceIdentity, out_dir: str | Path,
                  secondary_capture: bool = False) -> list[WrittenResult]:
    """Write the SR (and, with ``secondary_capture``, the SC of accepted images that have a
    heat map) of every prediction under ``out_dir/<StudyInstanceUID>/``, and update each
    study's ``study.json``. An existing result file is kept (same UID, same answer); inputs
    without a parsable dataset are listed with the reason (``skipped``). One entry per input."""
    out = Path(out_dir)
    written: list[WrittenResult] = []
    for prediction in predictions:
        ds = prediction.dataset
        record = WrittenResult(prediction.sop_instance_uid, prediction.study_instance_uid, prediction.status)
        record.skipped = answerable(prediction)
        if not record.skipped:
            folder = out / study_folder_name(str(ds.StudyInstanceUID))
            uids = result_uids(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), device.bundle_sha256)
            record.sr, record.existed = _write_once(folder / f"{uids.sr_instance}.dcm",
                                                    lambda: build_sr(prediction, device))
            if secondary_capture and prediction.status == ACCEPTED and prediction.heatmap:
                record.sc, _ = _write_once(folder / f"{uids.sc_instance}.dcm",
                                           lambda: build_secondary_capture(prediction, device, prediction.heatmap))
            update_study_summary(folder, prediction, record)
        written.append(record)
    return written


def written_line(written: list[WrittenResult], out_dir: str | Path) -> str:
    """``DICOM results in DIR: 3 SR, 1 SC written, 1 already there; 1 input not answerable``."""
    new = [w for w in written if w.sr and not w.existed]
    kept = sum(w.existed for w in written)
    sc = sum(w.sc is not None for w in new)
    skipped = sum(bool(w.skipped) for w in written)
    return (f"DICOM results in {out_dir}: {len(new)} SR, {sc} SC written, {kept} already there"
            + (f"; {skipped} input(s) without a DICOM dataset to answer into (no result)" if skipped else ""))


def _write_once(path: Path, build) -> tuple[Path, bool]:
    """Write ``build()`` to ``path`` atomically unless it exists; (path, existed)."""
    if path.exists():
        return path, True
    dataset = build()
    buffer = io.BytesIO()
    with _quiet():
        dataset.save_as(buffer, enforce_file_format=True)
    atomic_write(path, buffer.getvalue())
    return path, False


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to a temporary file in the same folder (flushed to disk when
    ``durable``), then rename it over ``path``: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}-{path.name}"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


# --- the study-level choice -------------------------------------------------------------------
def _uid_key(uid: str) -> tuple:
    try:
        return (0, tuple(int(part) for part in uid.split(".")))
    except ValueError:
        return (1, uid)


def choose_study_image(images: list[dict]) -> dict | None:
    """The image that stands for the study (:data:`STUDY_RULE`), or None when no image was
    accepted. ``images``: dicts with ``sop_instance_uid``, ``status`` and ``view``."""
    accepted = [i for i in images if i.get("status") == ACCEPTED]
    rank = {"PA": 0, "AP": 1}
    return min(accepted, key=lambda i: (rank.get(str(i.get("view", "")).upper(), 2),
                                        _uid_key(str(i["sop_instance_uid"]))), default=None)


def update_study_summary(folder: Path, prediction: Prediction, record: WrittenResult) -> Path:
    """Add (or replace) this image in ``folder/study.json`` and recompute the study's chosen
    image. Not safe for two writers at once: the node has one worker."""
    path = folder / STUDY_JSON
    try:
        summary = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        summary = {}
    images = {i["sop_instance_uid"]: i for i in summary.get("images", [])}
    ds = prediction.dataset
    images[str(ds.SOPInstanceUID)] = {
        "sop_instance_uid": str(ds.SOPInstanceUID), "status": prediction.status,
        "view": str(ds.get("ViewPosition", "") or ""), "probability": prediction.probability,
        "decision": prediction.decision, "sr": record.sr.name if record.sr else None,
        "sc": record.sc.name if record.sc else None}
    ordered = sorted(images.values(), key=lambda i: _uid_key(i["sop_instance_uid"]))
    chosen = choose_study_image(ordered)
    summary = {"study_instance_uid": str(ds.StudyInstanceUID), "images": ordered,
               "chosen": chosen["sop_instance_uid"] if chosen else None, "rule": STUDY_RULE,
               "counts": {s: sum(i["status"] == s for i in ordered) for s in (ACCEPTED, REFUSED, UNREADABLE)}}
    atomic_write(path, (json.dumps(summary, indent=2) + "\n").encode())
    return path
