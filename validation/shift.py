"""The shift report: the bundle's internal test split against an external set, metric by metric.

The internal results are the ones the bundle was locked with: ``evaluation/metrics.json`` and
``evaluation/predictions.csv`` of the run the bundle sits in, accepted only when their sha256
match what device.json and metrics.json recorded. For each metric: the internal estimate and
its 95% patient-bootstrap interval, the external estimate, the difference, and whether the
internal interval covers the external estimate (``covered``: descriptive only - it ignores the
external set's own uncertainty, so it is never the basis of a warning).

AUROC, sensitivity and specificity are also *tested* (``test``), with both samples' uncertainty:
sensitivity and specificity by Fisher's exact test with Newcombe's (1998) method 10 interval for
the difference of independent proportions; AUROC by the difference of the two AUROCs with both
DeLong variances (the internal one from the internal test split's scores) and a z test (see
:mod:`validation.two_sample`). The verdict is "differs" (p < :data:`ALPHA`), "no evidence of a
difference", or "not enough data" when the external set has fewer than
:data:`MIN_EXTERNAL_PER_CLASS` positives or negatives (or a side cannot be computed). The warning
fires only on "differs", and says what differs and by how much.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from cxr_device.hashing import sha256_file
from cxr_device.run_layout import RunLayout
from cxr_device.runtime.bundle import Bundle

from . import figures as fig
from .intervals import delong
from .two_sample import auroc_difference, proportion_difference

COMPARED = ("auroc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy", "brier")
OPERATING_POINT = ("sensitivity", "specificity")
TESTED = ("auroc", *OPERATING_POINT)
#: Fewest positives, and fewest negatives, the external set needs before a verdict is given.
MIN_EXTERNAL_PER_CLASS = 10
ALPHA = 0.05
DIFFERS, NO_EVIDENCE, NOT_ENOUGH = "differs", "no evidence of a difference", "not enough data"
RULE = (f"AUROC, sensitivity and specificity tested with both samples' uncertainty; 'differs' when p < {ALPHA:g}; "
        f"'not enough data' when the external set has fewer than {MIN_EXTERNAL_PER_CLASS} positives or "
        f"{MIN_EXTERNAL_PER_CLASS} negatives")


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


def _counts(confusion: dict, name: str) -> tuple[int, int]:
    """(successes, cases) of sensitivity or specificity from confusion counts."""
    if name == "sensitivity":
        return confusion["tp"], confusion["tp"] + confusion["fn"]
    return confusion["tn"], confusion["tn"] + confusion["fp"]


def _internal_auroc_variance(test: dict, predictions: pd.DataFrame | None) -> float | None:
    """DeLong variance of the internal test AUROC: from its scores when they are at hand, else
    from metrics.json (``splits.test.auroc.delong.variance``, written by newer runs)."""
    if predictions is not None and len(predictions):
        se = delong(predictions["probability"].to_numpy(float), predictions["label"].to_numpy(float))["se"]
        return se * se if math.isfinite(se) else None
    return ((test.get("auroc") or {}).get("delong") or {}).get("variance")


def metric_test(name: str, test: dict, predictions: pd.DataFrame | None, external: dict) -> dict:
    """The two-sample test of one metric, internal test split against the external set:
    ``{"method", "p_value", "difference", "ci95", "verdict", "note"}`` (difference = external - internal)."""
    n_pos = int(external["n_positive"])
    n_neg = int(external["n_images"]) - n_pos
    note = None
    if name == "auroc":
        internal_variance = _internal_auroc_variance(test, predictions)
        ext_se = external["auroc"]["delong"]["se"]
        external_variance = None if ext_se is None else ext_se * ext_se
        result = auroc_difference(test["auroc"]["value"], internal_variance, external["auroc"]["value"],
                                  external_variance)
        if internal_variance is None:
            note = "the internal test split's scores are not available: no DeLong variance for it"
        elif internal_variance == 0 or external_variance == 0:
            note = "a DeLong variance is 0 (an AUROC of 0 or 1): the z test understates the uncertainty"
    else:
        k1, n1 = _counts(test["confusion"], name)
        k2, n2 = external[name]["k"], external[name]["n"]
        result = proportion_difference(k1, n1, k2, n2)
    p = result["p_value"]
    if n_pos < MIN_EXTERNAL_PER_CLASS or n_neg < MIN_EXTERNAL_PER_CLASS:
        verdict = NOT_ENOUGH
        note = (f"the external set has {n_pos} positive(s) and {n_neg} negative(s); a verdict needs at least "
                f"{MIN_EXTERNAL_PER_CLASS} of each")
    elif p is None or not math.isfinite(p):
        verdict = NOT_ENOUGH
    else:
        verdict = DIFFERS if p < ALPHA else NO_EVIDENCE
    return {"method": result["method"], "p_value": p, "difference": result["difference"], "ci95": result["ci95"],
            "verdict": verdict, "note": note}


def compare_metrics(test: dict, predictions: pd.DataFrame | None, external: dict) -> list[dict]:
    """One row per metric of :data:`COMPARED`; the metrics of :data:`TESTED` carry ``test``."""
    rows = []
    for name in COMPARED:
        lo, hi = test[name]["ci95"]
        value, ext = test[name]["value"], _external(external, name)
        covered = None if lo is None or ext is None else bool(lo <= ext <= hi)
        rows.append({"metric": name, "internal": value, "internal_ci95": [lo, hi], "external": ext,
                     "difference": None if value is None or ext is None else ext - value, "covered": covered,
                     "test": metric_test(name, test, predictions, external) if name in TESTED else None})
    return rows


def shift_warning(rows: list[dict]) -> str | None:
    """The plain warning: what differs, by how much, and what it means; None when nothing differs."""
    differs = [r for r in rows if r["test"] and r["test"]["verdict"] == DIFFERS]
    if not differs:
        return None
    parts = []
    for r in differs:
        t = r["test"]
        test_name = "Fisher exact" if r["metric"] in OPERATING_POINT else "DeLong z test"
        parts.append(f"{r['metric']} {r['external']:.3f} against {r['internal']:.3f} internally (difference "
                     f"{t['difference']:+.3f}, 95% CI {t['ci95'][0]:+.3f} to {t['ci95'][1]:+.3f}; {test_name} "
                     f"p = {t['p_value']:.2g})")
    moved = any(r["metric"] in OPERATING_POINT for r in differs)
    meaning = []
    if moved:
        meaning.append("the locked operating point moved: the threshold locked on internal validation does not "
                       "transfer")
    if any(r["metric"] == "auroc" for r in differs):
        meaning.append("the device discriminates differently on this set")
    return ("on this set " + "; ".join(parts) + ": " + " and ".join(meaning) +
            "; do not rely on the internal figures for this population")


def shift_report(bundle: Bundle, external: dict, accepted: pd.DataFrame, out: Path) -> dict:
    """Compare with the internal test split; draw ``score_shift.png`` when internal predictions exist."""
    found = internal_results(bundle)
    if found is None:
        return {"internal": None, "note": "the bundle's run folder does not hold the evaluation it was locked with "
                "(evaluation/metrics.json missing or changed): no internal comparison"}
    internal, predictions, where = found
    test = internal["splits"]["test"]
    rows = compare_metrics(test, predictions, external)
    moved = any(r["test"] and r["test"]["verdict"] == DIFFERS for r in rows if r["metric"] in OPERATING_POINT)
    figure = None
    if predictions is not None and len(predictions):
        figure = "score_shift.png"
        fig.plot_score_shift(predictions["probability"].to_numpy(float), predictions["label"].to_numpy(float),
                             accepted["probability"].to_numpy(float), accepted["label"].to_numpy(float),
                             bundle.threshold, out / figure)
    return {"internal": {"run": where, "n_images": test["n_images"], "n_positive": test["n_positive"],
                         "interval": "patient bootstrap 95%"},
            "tests": {"rule": RULE, "alpha": ALPHA, "minimum_external_per_class": MIN_EXTERNAL_PER_CLASS,
                      "external_n_positive": int(external["n_positive"]),
                      "external_n_negative": int(external["n_images"]) - int(external["n_positive"])},
            "metrics": rows, "operating_point_moved": moved, "warning": shift_warning(rows), "figure": figure}
