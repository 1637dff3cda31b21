"""Agreement of NIH's text-mined labels with radiologist re-reads (Google 2019 labels).

The re-read set gives, for 4,376 NIH images, a consensus of radiologists on "Airspace opacity"
(among others). Pneumonia is not re-read as such; airspace opacity is its radiographic sign, so
the comparison bounds how far the text-mined pneumonia label can be trusted as a reference.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file


def _kappa(a: pd.Series, b: pd.Series) -> float:
    observed = float((a == b).mean())
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (observed - expected) / (1 - expected) if expected < 1 else float("nan")


def reader_agreement(path: str | Path) -> dict:
    """2 x 2 tables and kappa: NIH 'Pneumonia' (and pneumonia/consolidation/infiltration) vs the
    radiologists' 'Airspace opacity'."""
    try:
        frame = pd.read_csv(path)
        reads = frame["Airspace opacity"].astype(str).str.upper().eq("YES")
        labels = frame["Finding Labels"].astype(str)
    except (OSError, KeyError, ValueError) as err:
        raise CxrDeviceError(f"{path}: not the NIH radiologist re-read labels ({err})") from None
    out = {"path": str(path), "sha256": sha256_file(path), "n_images": int(len(frame)),
           "n_airspace_opacity": int(reads.sum()), "comparisons": {}}
    for name, pattern in (("pneumonia", "Pneumonia"), ("pneumonia_consolidation_infiltration",
                                                       "Pneumonia|Consolidation|Infiltration")):
        mined = labels.str.contains(pattern)
        both = int((mined & reads).sum())
        out["comparisons"][name] = {
            "label_positive": int(mined.sum()), "both_positive": both,
            "ppv_of_label": both / int(mined.sum()) if mined.any() else None,
            "share_of_opacities_labelled": both / int(reads.sum()) if reads.any() else None,
            "kappa": _kappa(mined.astype(float), reads.astype(float)),
        }
    return out
