"""What the development images were, as files: formats, pixel sizes and colour, beside the locked input rules.

The device reads DICOM and refuses what its input rules refuse (e.g. fewer than 512 rows, three
samples per pixel). Development images often are not such files (the pediatric set is 224 px RGB
JPEG): then the device would refuse its own training data, and the documents must say how the
development data relates to the DICOM path (profile ``training_data.relation_to_dicom``).

Formats come from the file names in ``cohort/cohort.csv`` (every row). Pixel size and colour
come from the headers of a deterministic sample of training images (the first
:data:`SAMPLE` by image id; headers only, no pixel is decoded) when the image files are
readable where the documents are rendered; otherwise the sample says so.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

SAMPLE = 20
DICOM_SUFFIXES = {".dcm", ".dicom", ""}
FORMAT_NAMES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".dcm": "DICOM", ".dicom": "DICOM", "": "DICOM"}


def development_images(cohort_csv: Path) -> dict:
    """``formats`` (name -> images, every split), ``n_images``, ``dicom`` (all DICOM?) and
    ``sample`` (``n``, ``min_side``, ``max_side``, ``modes``, ``unreadable``) of training images."""
    frame = pd.read_csv(cohort_csv, usecols=["image_id", "path", "split"], dtype=str).fillna("")
    suffixes = frame["path"].map(lambda p: Path(p).suffix.lower())
    formats = Counter(FORMAT_NAMES.get(s, s.lstrip(".").upper() or "DICOM") for s in suffixes)
    train = frame[frame["split"] == "train"].sort_values("image_id").head(SAMPLE)
    sides, modes, unreadable = [], Counter(), 0
    for path in train["path"]:
        header = _header(Path(path))
        if header is None:
            unreadable += 1
            continue
        width, height, mode = header
        sides.append(min(width, height))
        sides.append(max(width, height))
        modes[mode] += 1
    sample = {"n": len(train) - unreadable, "requested": len(train), "unreadable": unreadable,
              "min_side": min(sides) if sides else None, "max_side": max(sides) if sides else None,
              "modes": dict(sorted(modes.items()))}
    return {"n_images": int(len(frame)), "formats": dict(sorted(formats.items())), "kinds": " and ".join(sorted(formats)),
            "dicom": set(formats) == {"DICOM"}, "sample": sample}


def _header(path: Path) -> tuple[int, int, str] | None:
    """(width, height, mode) from the file's header: PIL's mode for images (L, RGB, I;16 ...),
    ``SamplesPerPixel=n`` for DICOM; None when the file cannot be read here."""
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return int(ds.Columns), int(ds.Rows), f"SamplesPerPixel={int(ds.get('SamplesPerPixel', 1))}"
        from PIL import Image

        with Image.open(path) as image:
            return image.size[0], image.size[1], image.mode
    except Exception:  # a missing, moved or unreadable file: the sample says how many
        return None


def samples_per_pixel(mode: str) -> int:
    """Samples per pixel of a PIL mode or a ``SamplesPerPixel=n`` label."""
    if mode.startswith("SamplesPerPixel="):
        return int(mode.split("=", 1)[1])
    return {"1": 1, "L": 1, "P": 1, "I": 1, "F": 1, "I;16": 1, "LA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
            "HSV": 3, "RGBA": 4, "CMYK": 4}.get(mode, 1)
