"""Write synthetic DICOM radiographs (for the demo and the tests), marked synthetic.

The default is a single-frame DX chest PA image ("Digital X-Ray Image Storage - For
Presentation") that passes the default rules and is a *standard-valid* instance of its IOD:
every Type 1 and Type 2 attribute of the DX modules is present (``dciodvfy`` reports no
error), so it can serve as the source image of a DICOM result (highdicom needs the General
Study module, AccessionNumber included). A CR or CT SOP class gets that IOD's attributes
instead (:data:`CR_IMAGE`, :data:`CT_IMAGE`; a CT needs 16-bit pixels).

Every header attribute can be overridden or removed (``None``) to build negative examples; the
result is then only as valid as the override. UIDs, dates and identifiers are derived from
``seed`` (and the path) so the same call writes the same file. Synthetic files mark themselves:
PatientName ``SYNTHETIC^PHANTOM``, ImageComments and SeriesDescription say so.

VOI: a DX image for presentation needs a window (or VOI LUT). Unless the caller gives one, the
window is the identity over the modality output range (centre ``(lo + hi + 1) / 2``, width
``hi - lo + 1`` after the rescale), so the decoded image is exactly the stored values scaled to
[0, 1], as without a window.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SYNTHETIC_NAME = "SYNTHETIC^PHANTOM"
SYNTHETIC_COMMENT = "SYNTHETIC phantom written by cxr-device; not patient data"
#: The fixed, obviously synthetic acquisition date and time of every synthetic file.
SYNTHETIC_DATE, SYNTHETIC_TIME = "20000101", "120000"
_VOI = ("WindowCenter", "WindowWidth", "VOILUTSequence")
#: ViewPosition -> its code in CID 4010 "DX View" (what DX Positioning's View Code Sequence holds).
_VIEW_CODES = {"PA": ("272479007", "postero-anterior"), "AP": ("399348003", "antero-posterior"),
               "LL": ("399173006", "left lateral"), "RL": ("399198007", "right lateral"),
               "LATERAL": ("399067008", "lateral")}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _common(uid: str, sop_class: str, seed: int, path: str) -> dict[str, Any]:
    """Patient, General Study/Series/Equipment/Image and SOP Common attributes of every IOD."""
    return {
        "SOPClassUID": sop_class,
        "SOPInstanceUID": uid,
        "StudyDate": SYNTHETIC_DATE,
        "SeriesDate": SYNTHETIC_DATE,
        "ContentDate": SYNTHETIC_DATE,
        "StudyTime": SYNTHETIC_TIME,
        "SeriesTime": SYNTHETIC_TIME,
        "ContentTime": SYNTHETIC_TIME,
        "AccessionNumber": f"SYN{seed:08d}",
        "Manufacturer": "cxr-device (synthetic)",
        "ReferringPhysicianName": "",
        "StudyDescription": "SYNTHETIC chest phantom",
        "SeriesDescription": "SYNTHETIC phantom (not patient data)",
        "PatientName": SYNTHETIC_NAME,
        "PatientID": f"SYNTH{seed:06d}",
        "PatientBirthDate": "19700101",
        "PatientSex": "F",
        "PatientAge": "055Y",
        "StudyInstanceUID": generate_uid(entropy_srcs=["study", str(seed), path]),
        "SeriesInstanceUID": generate_uid(entropy_srcs=["series", str(seed), path]),
        "StudyID": f"SYN{seed % 10000:04d}",
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        "ImageComments": SYNTHETIC_COMMENT,
    }


def _radiograph(modality: str) -> dict[str, Any]:
    """DX (DX Series, Image, Detector, Anatomy Imaged, Positioning) or CR attributes of a chest PA."""
    common = {
        "Modality": modality,
        "BodyPartExamined": "CHEST",
        "ViewPosition": "PA",
        "PatientOrientation": ["L", "F"],
        "ImagerPixelSpacing": [0.7, 0.7],
        "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00",
    }
    if modality == "CR":
        return {**common, "ImageType": ["ORIGINAL", "PRIMARY"]}
    return {
        **common,
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "PresentationIntentType": "FOR PRESENTATION",
        "ImageLaterality": "U",
        "AnatomicRegionSequence": Sequence([_code("816094009", "SCT", "Chest")]),
        "PixelIntensityRelationship": "LIN",
        "PixelIntensityRelationshipSign": 1,
        "RescaleIntercept": 0,
        "RescaleSlope": 1,
        "RescaleType": "US",
        "PresentationLUTShape": "IDENTITY",
        "DetectorType": "SCINTILLATOR",
        "PositionerType": "",
        "AcquisitionContextSequence": Sequence([]),
    }


def _ct(seed: int, path: str) -> dict[str, Any]:
    """CT Image, Image Plane and Frame of Reference attributes of one axial slice."""
    return {
        "Modality": "CT",
        "BodyPartExamined": "CHEST",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "FrameOfReferenceUID": generate_uid(entropy_srcs=["frame", str(seed), path]),
        "PositionReferenceIndicator": "",
        "PatientPosition": "HFS",
        "PixelSpacing": [0.5, 0.5],
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        "ImagePositionPatient": [-128, -128, 0],
        "SliceThickness": 1,
        "KVP": 120,
        "AcquisitionNumber": 1,
        "RescaleIntercept": -1024,
        "RescaleSlope": 1,
        "RescaleType": "HU",
        "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00",
    }


def write_synthetic_dicom(path: str | Path, pixels: np.ndarray, seed: int = 0, bits_stored: int | None = None,
                          photometric: str = "MONOCHROME2", **header: Any) -> Path:
    """Write ``pixels`` (uint8/uint16, (H, W), (H, W, 3) RGB or (frames, H, W)) as a DICOM file.

    ``header`` overrides attributes by keyword (``Modality="CT"``); ``None`` removes one. The
    SOP class (``SOPClassUID``, DX for presentation by default; CR and CT known) chooses which
    IOD's attributes are written.
    """
    pixels = np.ascontiguousarray(pixels)
    sop_class = header.pop("SOPClassUID", DX_FOR_PRESENTATION)
    uid = generate_uid(entropy_srcs=["cxr-device synthetic", str(seed), str(path)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class or DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    defaults = _common(uid, sop_class, seed, str(path))
    if sop_class == CT_IMAGE:
        defaults.update(_ct(seed, str(path)))
    else:
        defaults.update(_radiograph("CR" if sop_class == CR_IMAGE else "DX"))
    if photometric == "MONOCHROME1" and "PresentationLUTShape" in defaults:
        defaults["PresentationLUTShape"] = "INVERSE"
    for keyword, value in defaults.items():
        if value is not None:
            setattr(ds, keyword, value)
    rgb = pixels.ndim == 3 and pixels.shape[-1] == 3
    bits = bits_stored or (8 if pixels.dtype == np.uint8 else 16)
    ds.set_pixel_data(pixels, "RGB" if rgb else photometric, bits, generate_instance_uid=False)  # keep ours
    for keyword, value in header.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if not any(k in header for k in _VOI) and not rgb:
        _identity_window(ds)
    view = _VIEW_CODES.get(str(ds.get("ViewPosition", "")))
    if view and ds.get("Modality") == "DX" and "ViewCodeSequence" not in header:
        ds.ViewCodeSequence = Sequence([_code(view[0], "SCT", view[1])])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _identity_window(ds: Dataset) -> None:
    """A linear window that maps the modality output range onto itself (no change to the
    decoded image); nothing when the range cannot be worked out (a hostile test header)."""
    try:
        bits = int(ds.BitsStored)
        lo, hi = (0.0, 2.0**bits - 1) if int(ds.get("PixelRepresentation", 0)) == 0 else \
            (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    except (AttributeError, TypeError, ValueError):
        return
    lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return
    ds.WindowCenter = f"{(lo + hi + 1) / 2:.10g}"
    ds.WindowWidth = f"{hi - lo + 1:.10g}"
