"""The shift report: the bundle's internal test split against an external set, metric by metric.

The internal results are the ones the bundle was locked with: ``evaluation/metrics.json`` and
``evaluation/predictions.csv`` of the run the bundle sits in, accepted only when their sha256
match what device.json and metrics.json recorded. For each metric: the internal estimate and
its 95% interval, the external estimate, the difference, and whether the internal interval
covers the external estimate. A plain warning says when the locked operating point moved: the
external sensitivity or specificity falls outside the internal interval.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxr_device.hashing import sha256_file
from cxr_device.run_layout import RunLayout
from cxr_device.runtime.bundle import Bundle

from . import figures as fig

COMPARED = ("auroc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy", "brier")
OPERATING_POINT = ("sensitivity", "specificity")


def internal_results(bundle: Bundle) -> tuple[dict, pd.DataFrame, str] | None:
    """(internal metrics.json, its test predictions, where) when the bundle's run holds them
    unchanged since the bundle was locked; None otherwise."""
    run = RunLayout(bundle.folder.parent)
    expected = (bundle.meta.get("evaluation") or {}).get("metrics_json_sha256")
    if not expected or not run.metrics.is_file() or sha256_file(run.metrics) != expected:
        return None
    metrics = json.loads(run.metrics.read_text())
    predictions = None
    if run.predictions.is_file() and sha256_file(run.predictions) == metrics["inputs"].get("predictions_csv_sha256"):
        frame = pd.read_csv(run.predictions)
        predictions = frame[frame["split"] == "test"]
    return metrics, predictions, str(run.root)


def _external(metrics: dict, name: str) -> float | None:
    return metrics[name]["value"]


def shift_report(bundle: Bundle, external: dict, accepted: pd.DataFrame, out: Path) -> dict:
    """Compare with the internal test split; draw ``score_shift.png`` when internal predictions exist."""
    found = internal_results(bundle)
    if found is None:
        return {"internal": None, "note": "the bundle's run folder does not hold the evaluation it was locked with "
                "(evaluation/metrics.json missing or changed): no internal comparison"}
    internal, predictions, where = found
    test = internal["splits"]["test"]
    rows = []
    for name in COMPARED:
        lo, hi = test[name]["ci95"]
        value, ext = test[name]["value"], _external(external, name)
        covered = None if lo is None or ext is None else bool(lo <= ext <= hi)
        rows.append({"metric": name, "internal": value, "internal_ci95": [lo, hi], "external": ext,
                     "difference": None if value is None or ext is None else ext - value, "covered": covered})
    moved = [r for r in rows if r["metric"] in OPERATING_POINT and r["covered"] is False]
    warning = None
    if moved:
        parts = [f"{r['metric']} {r['external']:.3f} outside the internal {r['internal_ci95'][0]:.3f}-"
                 f"{r['internal_ci95'][1]:.3f}" for r in moved]
        warning = ("the locked operating point moved on this set: " + "; ".join(parts) + ". The threshold locked "
                   "on internal validation does not transfer; do not rely on the internal figures for this population")
    figure = None
    if predictions is not None and len(predictions):
        figure = "score_shift.png"
        fig.plot_score_shift(predictions["probability"].to_numpy(float), predictions["label"].to_numpy(float),
                             accepted["probability"].to_numpy(float), accepted["label"].to_numpy(float),
                             bundle.threshold, out / figure)
    return {"internal": {"run": where, "n_images": test["n_images"], "n_positive": test["n_positive"],
                         "interval": "patient bootstrap 95%"},
            "metrics": rows, "operating_point_moved": bool(moved), "warning": warning, "figure": figure}
