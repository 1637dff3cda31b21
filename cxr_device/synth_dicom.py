"""Write synthetic DICOM radiographs (for the demo and the tests), marked synthetic.

The default is a valid single-frame DX chest PA image that passes the default rules; every
header attribute can be overridden or removed (``None``) to build negative examples.
UIDs are derived from ``seed`` so the same call writes the same file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
SYNTHETIC_NAME = "SYNTHETIC^PHANTOM"


def write_synthetic_dicom(path: str | Path, pixels: np.ndarray, seed: int = 0, bits_stored: int | None = None,
                          photometric: str = "MONOCHROME2", **header: Any) -> Path:
    """Write ``pixels`` (uint8/uint16, (H, W), (H, W, 3) RGB or (frames, H, W)) as a DICOM file.

    ``header`` overrides attributes by keyword (``Modality="CT"``); ``None`` removes one.
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
    defaults = {
        "SOPClassUID": sop_class,
        "SOPInstanceUID": uid,
        "StudyInstanceUID": generate_uid(entropy_srcs=["study", str(seed), str(path)]),
        "SeriesInstanceUID": generate_uid(entropy_srcs=["series", str(seed), str(path)]),
        "Modality": "DX",
        "BodyPartExamined": "CHEST",
        "ViewPosition": "PA",
        "PatientName": SYNTHETIC_NAME,
        "PatientID": f"SYNTH{seed:06d}",
        "PatientBirthDate": "19700101",
        "PatientAge": "055Y",
        "PatientSex": "F",
        "PresentationIntentType": "FOR PRESENTATION",
        "ImageComments": "SYNTHETIC phantom written by cxr-device; not patient data",
    }
    for keyword, value in defaults.items():
        if value is not None:
            setattr(ds, keyword, value)
    rgb = pixels.ndim == 3 and pixels.shape[-1] == 3
    bits = bits_stored or (8 if pixels.dtype == np.uint8 else 16)
    ds.set_pixel_data(pixels, "RGB" if rgb else photometric, bits)
    for keyword, value in header.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
