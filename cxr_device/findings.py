"""The NIH ChestX-ray14 label vocabulary and the column names derived from it."""
from __future__ import annotations

#: The 14 NIH findings plus "No Finding", spelled as in ``Data_Entry_2017.csv``.
NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
    "No Finding",
)

#: The device's target: pneumonia (1) vs everything else (0).
TARGET = "pneumonia"


def finding_column(name: str) -> str:
    """Column name of a finding's 0/1 indicator: ``"Pleural_Thickening" -> "pleural_thickening"``."""
    return name.strip().lower().replace(" ", "_")


FINDING_COLUMNS: tuple[str, ...] = tuple(finding_column(f) for f in NIH_FINDINGS)
_BY_KEY = {f.lower().replace("_", " "): f for f in NIH_FINDINGS}


def canonical_finding(name: str) -> str | None:
    """Return the canonical NIH spelling of ``name`` (case/underscore-insensitive), or None."""
    return _BY_KEY.get(name.strip().lower().replace("_", " "))
