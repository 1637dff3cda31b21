"""External development sets: the data the device's calibration and threshold are decided on.

The internal splits of a training folder can be nearly separable, so a calibration or a threshold
chosen on them says little about new patients. A run config can name external development sets
(``development.sets``: class folders, a cohort split, NIH metadata with images, or DICOM with
labels, read like ``assess`` reads them). ``evaluate`` then scores each through exactly the path
the locked device uses (:class:`cxr_device.runtime.pipeline.DevicePipeline`, on a provisional
bundle with the final weights and test-time views), fits the calibration and chooses the
threshold on their logits and labels, and records which data made which decision. The internal
validation split decides only the best epoch; the internal test split decides nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxr_device.runtime.bundle import Bundle
from cxr_device.runtime.pipeline import ACCEPTED

from .assessment import score
from .assessment_inputs import input_set


@dataclass
class DevelopmentScores:
    """One development set scored by the provisional device: its accepted rows (``logit``,
    ``label``, ``patient``) and what it could not score."""

    name: str
    accepted: pd.DataFrame
    n_labelled: int
    n_excluded: int
    not_scored: list[dict]
    description: dict


def score_development(bundle: Bundle, sets: list[dict], progress: bool = False) -> list[DevelopmentScores]:
    """Every development set through the device path of ``bundle``; the scores of each."""
    out = []
    for spec in sets:
        inputs = input_set(spec)
        frame = score(bundle, inputs, progress, desc=f"development set {spec['name']}")
        accepted = frame[frame["status"] == ACCEPTED].reset_index(drop=True)
        refused = frame[frame["status"] != ACCEPTED]
        out.append(DevelopmentScores(spec["name"], accepted, len(inputs.items), len(inputs.excluded),
                                     [{"key": r["key"], "status": r["status"], "reason": r["reason"]}
                                      for r in refused.to_dict("records")],
                                     {**inputs.description, "source": inputs.kind}))
    return out


def pooled(scores: list[DevelopmentScores]) -> tuple[np.ndarray, np.ndarray]:
    """The logits and labels of every accepted image of the development sets, in order."""
    frames = [s.accepted for s in scores]
    logits = np.concatenate([f["logit"].to_numpy(dtype=np.float64) for f in frames])
    labels = np.concatenate([f["label"].to_numpy(dtype=np.int64) for f in frames])
    return logits, labels


def decisions(fitted_on: str, calibration: str, threshold: str, selection: dict | None) -> list[dict]:
    """Which data made which decision (what metrics.json records and the documents print)."""
    recipe = ({"decision": "recipe (architecture, augmentation, schedule)", "made_on": fitted_on,
               "how": f"the pre-declared study ({selection['declared_in'] or 'the run configuration'}): "
                      f"{selection['metric']}; tie-break: {selection['tie_break']}; chosen: {selection['chosen']}"}
              if selection else {"decision": "recipe (architecture, augmentation, schedule)",
                                 "made_on": "not recorded by this run", "how": "the run's configuration"})
    return [recipe,
            {"decision": "best epoch", "made_on": "val", "how": "the highest internal validation AUROC"},
            {"decision": "calibration", "made_on": fitted_on, "how": calibration},
            {"decision": "threshold", "made_on": fitted_on, "how": threshold}]
