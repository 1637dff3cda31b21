"""Subgroup analysis at the locked threshold: age bands, sex, view position.

Each subgroup gets counts, prevalence, and AUROC, sensitivity and specificity with 95%
patient-bootstrap intervals. A subgroup with fewer than :data:`MIN_PER_CLASS` positive or
negative images is kept in the table and flagged ``unstable`` - never hidden.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import bootstrap

AGE_BANDS = [(0, 18, "<18"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+")]
MIN_PER_CLASS = 10
SUBGROUP_METRICS = ("auroc", "sensitivity", "specificity")


def age_band(age: float) -> str | None:
    if age is None or not np.isfinite(age):
        return None
    return next(label for lo, hi, label in AGE_BANDS if lo <= age < hi)


def subgroup_table(predictions: pd.DataFrame, threshold: float, n_bootstrap: int, seed: int) -> list[dict]:
    """One row per subgroup level present in ``predictions`` (columns probability, label,
    patient_id, age_years, sex, view)."""
    groups = {
        "age": predictions["age_years"].map(age_band),
        "sex": predictions["sex"].replace("", np.nan),
        "view": predictions["view"].replace("", np.nan),
    }
    order = {"age": [label for _, _, label in AGE_BANDS]}
    rows = []
    for name, levels in groups.items():
        present = [lv for lv in order.get(name, sorted(levels.dropna().unique())) if (levels == lv).any()]
        for level in present:
            part = predictions[levels == level]
            n_pos = int(part["label"].sum())
            n_neg = len(part) - n_pos
            stats = bootstrap(part["probability"].to_numpy(), part["label"].to_numpy(), part["patient_id"].to_numpy(),
                              threshold, n_bootstrap, seed, metrics=SUBGROUP_METRICS)
            rows.append({
                "group": name, "level": str(level), "n_images": len(part),
                "n_patients": int(part["patient_id"].nunique()), "n_positive": n_pos,
                "prevalence": n_pos / len(part), **stats,
                "unstable": n_pos < MIN_PER_CLASS or n_neg < MIN_PER_CLASS,
            })
    return rows
