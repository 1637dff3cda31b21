"""Patient-level bootstrap confidence intervals.

Images of one patient are correlated, so resampling images would make intervals too narrow.
Each replicate draws *patients* with replacement (as many as there are) and keeps all their
images, expressed as integer weights per image; 95% intervals are the 2.5th and 97.5th
percentiles of the replicates (replicates in which a metric is undefined, e.g. no positive
drawn, are left out of that metric and counted).
"""
from __future__ import annotations

import numpy as np

from cxr_device.resources import require_memory

from .metrics import ALL_METRICS, all_metrics, ranking, roc_points

FPR_GRID = np.linspace(0.0, 1.0, 101)


def patient_weights(patient_codes: np.ndarray, n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """How many times each image's patient was drawn in one replicate."""
    draws = np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)
    return draws[patient_codes].astype(float)


def bootstrap(probs: np.ndarray, labels: np.ndarray, patients: np.ndarray, threshold: float, n: int, seed: int,
              metrics: tuple[str, ...] = ALL_METRICS, roc_band: bool = False) -> dict:
    """Point estimates and 95% patient-bootstrap intervals of ``metrics`` at ``threshold``.

    Returns ``{metric: {"value", "ci95": [lo, hi], "n_undefined"}}``, plus ``roc_band`` (tpr
    percentiles on :data:`FPR_GRID`) when asked.
    """
    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    require_memory(8 * (n * (len(metrics) + (len(FPR_GRID) if roc_band else 0)) + 16 * len(probs)),
                   f"{n:,} bootstrap replicates of {len(probs):,} images",
                   "lower the bootstrap setting (evaluate.bootstrap, assess[].bootstrap, --bootstrap)")
    codes = np.unique(np.asarray(patients).astype(str), return_inverse=True)[1]
    n_patients = int(codes.max()) + 1 if len(codes) else 0
    r = ranking(probs, labels)
    point = all_metrics(probs, labels, threshold, r=r)
    rng = np.random.default_rng(seed)
    samples = {m: np.empty(n) for m in metrics}
    curves = np.empty((n, len(FPR_GRID))) if roc_band else None
    for b in range(n):
        w = patient_weights(codes, n_patients, rng)
        values = all_metrics(probs, labels, threshold, w, r)
        for m in metrics:
            samples[m][b] = values[m]
        if roc_band:
            fpr, tpr = roc_points(r, w)
            curves[b] = np.interp(FPR_GRID, fpr, tpr) if np.isfinite(values["auroc"]) else np.nan
    out = {}
    for m in metrics:
        finite = samples[m][np.isfinite(samples[m])]
        ci = [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))] if len(finite) else [None, None]
        out[m] = {"value": _clean(point[m]), "ci95": ci, "n_undefined": int(n - len(finite))}
    if roc_band:
        valid = curves[np.isfinite(curves).all(axis=1)]
        out["roc_band"] = {"fpr": FPR_GRID.tolist(), "tpr_lo": np.percentile(valid, 2.5, axis=0).tolist(),
                           "tpr_hi": np.percentile(valid, 97.5, axis=0).tolist()} if len(valid) else None
    return out


def _clean(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def format_interval(metric: dict) -> str:
    """``{"value", "ci95"}`` as ``0.912 [0.880, 0.940]`` (for terminals; documents have their own style)."""
    value, (lo, hi) = metric["value"], metric["ci95"]
    if value is None:
        return "n/a"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{value:.3f}"
