"""The locked device's calibration: the map from the model's logit to the probability it reports.

``p = sigmoid(slope * logit + offset)``; fitted on the validation split by ``cxr-device evaluate``
(:mod:`validation.calibration`), recorded in device.json and applied by every scoring path
(evaluate, predict, assess, the DICOM node) through :meth:`Calibration.probabilities`. The map is
monotone: it never changes which of two images scores higher.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

METHODS = ("platt", "temperature", "none")


@dataclass(frozen=True)
class Calibration:
    """A fitted logit-to-probability map; the identity (``none``) by default."""

    method: str = "none"
    slope: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (math.isfinite(self.slope) and self.slope > 0 and math.isfinite(self.offset)):
            raise ValueError(f"calibration needs a finite positive slope and a finite offset, "
                             f"got slope {self.slope!r}, offset {self.offset!r}")

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64) of model logits."""
        return sigmoid(self.slope * np.asarray(logits, dtype=np.float64) + self.offset)

    def raw_threshold(self, threshold: float) -> float:
        """The uncalibrated probability that maps to ``threshold``: where the same decision
        boundary lies on the model's own sigmoid scale."""
        z = (logit(threshold) - self.offset) / self.slope
        return float(sigmoid(np.array([z]))[0])

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.method == "temperature":
            out["temperature"] = 1.0 / self.slope
        return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def logit(p: float | np.ndarray) -> float | np.ndarray:
    """Inverse sigmoid, clipped away from 0 and 1."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    out = np.log(q) - np.log1p(-q)
    return float(out) if np.ndim(out) == 0 else out
