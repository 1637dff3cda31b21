"""What the latency benches share: a 1024 x 1024 DICOM made from a real NIH image of the shared data."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_device.synth_dicom import write_synthetic_dicom

SHARED = Path(os.environ.get("CXR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def nih_dicom(prefix: str) -> tuple[Path, Path, Path]:
    """A fresh work folder, a DICOM of the first NIH 1024 px image in it, and an empty cohort CSV for a
    bundle; exits with a message when the shared data are absent."""
    sources = sorted((SHARED / "nih" / "images_1024").glob("*.png"))
    if not sources:
        sys.exit(f"no PNGs in {SHARED / 'nih' / 'images_1024'} (set CXR_SHARED_DATA)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    dicom = write_synthetic_dicom(work / "cxr1024.dcm", np.asarray(Image.open(sources[0]).convert("L")))
    cohort = work / "cohort.csv"
    cohort.write_text("image_id\n")
    return work, dicom, cohort
