"""``cxr-device assess``: standalone performance of a locked device on data it has never seen.

The bundle is verified and used as it is: every input goes through the device runtime
(:class:`cxr_device.runtime.pipeline.DevicePipeline`) - the bundle's input rules for DICOM,
the one preprocessing, the model, its calibration and the locked threshold. Nothing is tuned on
the assessed data.

Outputs in ``OUT`` (default ``RUN/assessment/NAME``): ``predictions.csv`` (one row per labelled
input, scored or not), ``assessment.json`` and figures. Performance is reported two ways: over
the accepted inputs, and with every refused or unreadable input counted as a failure of the
device (a missed positive, a false alarm). Every metric has a 95% interval with its method
named: AUROC by DeLong and by bootstrap; sensitivity and specificity by Clopper-Pearson (exact),
Wilson and bootstrap. Acceptance is judged on the lower bound of the exact interval of each
proportion and, for AUROC, of DeLong's interval - or of Newcombe's (2006) score interval where
DeLong's is degenerate (:func:`validation.intervals.auroc_interval`); an interval of zero width,
or one that cannot be computed, is never a pass. The bootstrap resamples patients (a DICOM's
patient is its hashed PatientID and IssuerOfPatientID); an input whose source records no
patient id is its own unit, and ``bootstrap.unit`` says so. The shift report compares the
internal test split of the bundle's own run with this set, metric by metric, and tests the
differences of AUROC, sensitivity and specificity (:mod:`validation.shift`).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cxr_device.provenance import producer
from cxr_device.runtime.bundle import Bundle
from cxr_device.runtime.pipeline import ACCEPTED, DevicePipeline, Prediction
from cxr_device.safe_text import spreadsheet_cell
from cxr_device.validated import Replicates, Seed, check_setting

from . import figures as fig
from .assessment_inputs import InputSet
from .bootstrap import bootstrap
from .calibration import expected_calibration_error, reliability
from .intervals import (
    auroc_interval,
    delong,
    lower_bound_for_acceptance,
    predictive_values_interval,
    proportion,
)
from .metrics import confusion, finite, from_confusion
from .shift import shift_report
from .subgroups import subgroup_table

PREDICTIONS, ASSESSMENT, OUTSIDE_SET = "predictions.csv", "assessment.json", "outside_set.csv"
PREDICTION_COLUMNS = ["key", "patient", "label", "status", "logit", "probability", "decision", "reason", "age_years",
                      "sex", "view"]
PROPORTION_METHOD = "Clopper-Pearson"
#: The interval each criterion is judged on, as the validation plan names it.
ACCEPTANCE_METHODS = {"auroc": "DeLong (Newcombe (2006) score interval where DeLong's is degenerate)",
                      "sensitivity": PROPORTION_METHOD, "specificity": PROPORTION_METHOD}
BATCH = 64


def score(bundle: Bundle, inputs: InputSet, progress: bool = False, desc: str = "assess") -> pd.DataFrame:
    """Run every labelled input through the device; one row per input, in input order."""
    pipeline = DevicePipeline(bundle)
    results: list[Prediction] = []
    bar = tqdm(total=len(inputs.items), desc=desc, unit="img", disable=not progress)
    for start in range(0, len(inputs.items), BATCH):
        chunk = inputs.items[start:start + BATCH]
        results += pipeline.run([item.path for item in chunk], allow_non_dicom=not inputs.dicom)
        bar.update(len(chunk))
    bar.close()
    rows = []
    for item, result in zip(inputs.items, results):
        rows.append({"key": item.key, "patient": item.patient, "label": item.label, "status": result.status,
                     "logit": result.logit, "probability": result.probability, "decision": result.decision or "",
                     "reason": result.reason, "age_years": item.age_years, "sex": item.sex, "view": item.view})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def bootstrap_units(accepted: pd.DataFrame) -> tuple[pd.Series, str]:
    """The unit each accepted input is resampled with - its patient, or the image itself when the
    source records no patient id - and how the report names that unit (never "patient" when
    no input has a patient id)."""
    known = accepted["patient"] != ""
    units = ("patient " + accepted["patient"]).where(known, "image " + accepted["key"])
    if known.all():
        return units, "patient"
    if not known.any():
        return units, "image (no patient ids)"
    return units, f"patient; image for the {int((~known).sum())} of {len(known)} inputs without a patient id"


def standalone_metrics(accepted: pd.DataFrame, threshold: float, n_bootstrap: int, seed: int) -> dict:
    """Every metric over the accepted inputs, each with its 95% interval(s) and method;
    ``n_patients`` is None when no input has a patient id."""
    probs, labels = accepted["probability"].to_numpy(float), accepted["label"].to_numpy(float)
    counts = {k: int(v) for k, v in confusion(probs, labels, threshold).items()}
    boot = bootstrap(probs, labels, bootstrap_units(accepted)[0].to_numpy(), threshold, n_bootstrap, seed)
    point = from_confusion(counts)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    known = accepted["patient"][accepted["patient"] != ""]
    out = {
        "n_images": int(len(accepted)), "n_patients": int(known.nunique()) if len(known) else None,
        "n_without_patient_id": int(len(accepted) - len(known)),
        "n_positive": int(labels.sum()), "prevalence": float(labels.mean()) if len(labels) else None,
        "confusion": counts,
        "auroc": {"value": boot["auroc"]["value"], "delong": delong(probs, labels),
                  "interval": auroc_interval(probs, labels), "bootstrap_ci95": boot["auroc"]["ci95"]},
        "sensitivity": {**proportion(tp, tp + fn), "bootstrap_ci95": boot["sensitivity"]["ci95"]},
        "specificity": {**proportion(tn, tn + fp), "bootstrap_ci95": boot["specificity"]["ci95"]},
        "ppv": {**proportion(tp, tp + fp), "bootstrap_ci95": boot["ppv"]["ci95"]},
        "npv": {**proportion(tn, tn + fn), "bootstrap_ci95": boot["npv"]["ci95"]},
        "f1": {"value": point["f1"], "bootstrap_ci95": boot["f1"]["ci95"]},
        "accuracy": {**proportion(tp + tn, tp + tn + fp + fn), "bootstrap_ci95": boot["accuracy"]["ci95"]},
        "brier": {"value": boot["brier"]["value"], "bootstrap_ci95": boot["brier"]["ci95"]},
        "ece": {"value": expected_calibration_error(probs, labels), "bins": 10, "binning": "equal width"},
        "reliability": reliability(probs, labels),
        "average_precision": {"value": boot["average_precision"]["value"],
                              "bootstrap_ci95": boot["average_precision"]["ci95"]},
    }
    return out


def with_refusals_as_failures(frame: pd.DataFrame) -> dict:
    """Sensitivity, specificity and accuracy over every labelled input, a refused or unreadable
    positive counted as missed and a refused negative as a false alarm."""
    positive = frame["label"] == 1
    detected = (frame["status"] == ACCEPTED) & (frame["decision"] == "pneumonia")
    cleared = (frame["status"] == ACCEPTED) & (frame["decision"] == "no pneumonia")
    tp, tn = int((positive & detected).sum()), int((~positive & cleared).sum())
    return {"n_inputs": int(len(frame)), "n_not_scored": int((frame["status"] != ACCEPTED).sum()),
            "sensitivity": proportion(tp, int(positive.sum())), "specificity": proportion(tn, int((~positive).sum())),
            "accuracy": proportion(tp + tn, int(len(frame)))}


def predictive_values_at(prevalence: float, metrics: dict) -> dict:
    """PPV and NPV at an intended-use prevalence by Bayes, with the conservative interval of
    :func:`validation.intervals.predictive_values_interval` from the counts behind sensitivity
    and specificity."""
    sens, spec = metrics["sensitivity"], metrics["specificity"]
    return predictive_values_interval(sens["k"], sens["n"], spec["k"], spec["n"], prevalence)


def judge(acceptance: dict[str, float], metrics: dict) -> dict:
    """Pass/fail of each acceptance criterion on the lower bound of its 95% interval: AUROC on
    ``auroc.interval`` (DeLong, or Newcombe's score interval where DeLong's is degenerate), a
    proportion on its Clopper-Pearson interval. An interval of zero width or that cannot be
    computed is never a pass; ``note`` says so, and when the AUROC fallback was used."""
    rows = {}
    for name, criterion in acceptance.items():
        metric = metrics[name]
        if name == "auroc":
            interval = metric["interval"]
            ci, method = interval["ci95"], interval["method"] or "none (a class is absent)"
            fallback = (f"DeLong's interval is degenerate ({interval['delong_degenerate']}): judged on the "
                        "Newcombe (2006) score interval" if interval["delong_degenerate"] else None)
        else:
            ci, method, fallback = metric["clopper_pearson"], PROPORTION_METHOD, None
        lower, unusable = lower_bound_for_acceptance(ci)
        note = "; ".join(n for n in (fallback, unusable) if n) or None
        rows[name] = {"criterion": criterion, "lower_bound": lower, "ci95": list(ci), "method": method,
                      "passed": bool(unusable is None and lower >= criterion), "note": note}
    return {"criteria": rows, "passed": all(r["passed"] for r in rows.values()) if rows else None}


def assess(bundle: Bundle, inputs: InputSet, out_dir: str | Path, name: str, acceptance: dict | None = None,
           intended_prevalence: float | None = None, n_bootstrap: int = 2000, seed: int = 0,
           progress: bool = False, role: str | None = None) -> dict:
    """Score ``inputs`` with the locked ``bundle``; write predictions.csv, assessment.json and
    figures into ``out_dir``; return assessment.json's content. ``role`` (a development set's:
    decisions were made on it) is recorded, and such a set is marked ``development``."""
    check_setting(Replicates, n_bootstrap, "bootstrap")
    check_setting(Seed, seed, "seed")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = score(bundle, inputs, progress)
    _write_predictions(frame, out / PREDICTIONS)
    write_outside_set(inputs, out)
    accepted = frame[frame["status"] == ACCEPTED]
    threshold = bundle.threshold
    usable = len(accepted) > 0 and 0 < accepted["label"].sum() < len(accepted)
    metrics = standalone_metrics(accepted, threshold, n_bootstrap, seed) if usable else None
    not_scored = frame[frame["status"] != ACCEPTED]
    document = {
        "name": name,
        "role": role or "external set: no development decision was made on it",
        "development": role is not None,
        "device": {"device_json_sha256": bundle.device_sha256, "bundle": str(bundle.folder),
                   "signature": bundle.signature.describe(), "threshold": threshold,
                   "threshold_rule": bundle.meta["threshold"].get("rule"),
                   "calibration": bundle.meta.get("calibration", {"method": "none"})},
        "inputs": {**inputs.description, "source": inputs.kind, "n_labelled": len(inputs.items),
                   "n_excluded": len(inputs.excluded), "excluded_by_reason": excluded_by_reason(inputs),
                   "excluded": inputs.excluded,
                   "n_outside_set": len(inputs.outside),
                   "outside_set_listed_in": OUTSIDE_SET if inputs.outside else None,
                   "n_positive": int(frame["label"].sum()), "n_negative": int((frame["label"] == 0).sum())},
        "scoring": {"n_accepted": int(len(accepted)), "n_not_scored": int(len(not_scored)),
                    "by_status": {str(k): int(v) for k, v in frame["status"].value_counts().sort_index().items()},
                    "not_scored": [{"key": r["key"], "status": r["status"], "reason": r["reason"]}
                                   for r in not_scored.to_dict("records")],
                    "header_checks": header_checks(inputs)},
        "accepted": metrics,
        "all_inputs": with_refusals_as_failures(frame),
        "note": None if usable else "the accepted inputs do not hold both classes: metrics are undefined",
        "bootstrap": {"n": n_bootstrap, "seed": seed, "unit": bootstrap_units(accepted)[1] if usable else None,
                      "interval": "percentile 95%"},
        "subgroups": _subgroups(accepted, threshold, n_bootstrap, seed) if usable else [],
        "predictive_values_at_intended_prevalence": predictive_values_at(intended_prevalence, metrics)
        if usable and intended_prevalence else None,
        "acceptance": judge(acceptance or {}, metrics) if usable and acceptance else None,
        "operating_point_transfer": operating_point_transfer(bundle, accepted) if usable else None,
        "shift": shift_report(bundle, metrics, accepted, out) if usable else None,
        "figures": _figures(out, accepted, threshold, name) if usable else {},
        "produced_by": producer("assess", {"name": name, "bootstrap": n_bootstrap, "seed": seed,
                                          "intended_prevalence": intended_prevalence, "acceptance": acceptance}),
    }
    document = finite(document)
    (out / ASSESSMENT).write_text(json.dumps(document, indent=2) + "\n")
    return document


def operating_point_transfer(bundle: Bundle, accepted: pd.DataFrame) -> dict | None:
    """The threshold the bundle's own policy would choose on this set's probabilities, beside the
    locked one, and the set at each: how far the operating point transfers (information, never
    tuning - nothing here changes the device)."""
    from .threshold import ThresholdPolicy, operating_thresholds

    policy = (bundle.meta.get("threshold") or {}).get("policy")
    if not policy:
        return None
    chosen = ThresholdPolicy(policy["rule"], policy.get("target"), policy.get("tolerance", 0.01))
    probs, labels = accepted["probability"].to_numpy(), accepted["label"].to_numpy()
    here = operating_thresholds(probs, labels, 0.9, chosen)[chosen.name][1]
    return {"policy": chosen.description(), "locked": bundle.threshold, "would_choose_here": here,
            "at_locked": from_confusion(confusion(probs, labels, bundle.threshold)),
            "at_would_choose": from_confusion(confusion(probs, labels, here)),
            "note": "information: the locked device is unchanged"}


def excluded_by_reason(inputs: InputSet) -> dict[str, int]:
    """How many inputs were excluded before scoring, by reason (``conflicting_label`` ...)."""
    return dict(sorted(Counter(e["reason"] for e in inputs.excluded).items()))


def header_checks(inputs: InputSet) -> str:
    """Which input checks ran before scoring: the bundle's rules for DICOM, none for PNG/JPEG."""
    return ("bundle input rules" if inputs.dicom else
            "none possible (PNG/JPEG): the rules' pixel, size and header checks do not apply")


def write_outside_set(inputs: InputSet, out: Path) -> None:
    """``outside_set.csv``: the metadata rows naming images the set does not hold (none: no file)."""
    if inputs.outside:
        pd.DataFrame(inputs.outside, columns=["key", "reason", "detail"]).map(spreadsheet_cell).to_csv(
            out / OUTSIDE_SET, index=False, lineterminator="\n")


def left_out(document: dict) -> int:
    """Inputs that did not contribute: excluded before scoring, or refused/unreadable."""
    return document["inputs"]["n_excluded"] + document["scoring"]["n_not_scored"]


def _subgroups(accepted: pd.DataFrame, threshold: float, n_bootstrap: int, seed: int) -> list[dict]:
    frame = accepted.assign(patient_id=bootstrap_units(accepted)[0])
    recorded = frame["age_years"].notna().any() or (frame["sex"] != "").any() or (frame["view"] != "").any()
    return subgroup_table(frame.fillna({"sex": "", "view": ""}), threshold, n_bootstrap, seed) if recorded else []


def _write_predictions(frame: pd.DataFrame, path: Path) -> None:
    safe = frame.copy()
    for column in ("key", "patient", "reason", "sex", "view"):
        safe[column] = safe[column].map(spreadsheet_cell)
    safe["probability"] = safe["probability"].map(lambda p: "" if p is None or pd.isna(p) else repr(float(p)))
    safe.to_csv(path, index=False, lineterminator="\n")


def _figures(out: Path, accepted: pd.DataFrame, threshold: float, name: str) -> dict:
    probs, labels = accepted["probability"].to_numpy(float), accepted["label"].to_numpy(float)
    made = {"roc": "roc.png", "pr": "precision_recall.png", "reliability": "reliability.png",
            "confusion": "confusion_matrix.png"}
    fig.plot_operating_point(probs, labels, threshold, name, out / made["roc"], out / made["pr"])
    fig.plot_calibration({name: reliability(probs, labels)}, out / made["reliability"], width=fig.CELL_WIDTH)
    fig.plot_confusion(probs, labels, threshold, out / made["confusion"], title=f"{name}: confusion matrix")
    if (out / "score_shift.png").is_file():
        made["score_shift"] = "score_shift.png"
    return made




def summary_lines(document: dict) -> list[str]:
    """What ``assess`` prints: counts, the headline metrics with their intervals, acceptance, shift."""
    inputs, scoring, accepted = document["inputs"], document["scoring"], document["accepted"]
    lines = [f"assessment {document['name']}: {inputs['n_labelled']} labelled inputs ({inputs['n_positive']} positive), "
             f"{scoring['n_accepted']} scored, {scoring['n_not_scored']} refused or unreadable, "
             f"{inputs['n_excluded']} excluded before scoring"
             + (" (" + ", ".join(f"{n} {reason}" for reason, n in inputs.get("excluded_by_reason", {}).items()) + ")"
                if inputs["n_excluded"] else "")
             + (f"; {inputs['n_outside_set']:,} metadata row(s) name images the set does not hold (listed in "
                f"{OUTSIDE_SET}, not counted as left out)" if inputs.get("n_outside_set") else "")]
    if accepted is None:
        return lines + [f"  {document['note']}"]
    a = accepted
    lines += [
        f"  AUROC        {a['auroc']['value']:.3f}  DeLong {_pair(a['auroc']['delong']['ci95'])}  "
        f"bootstrap {_pair(a['auroc']['bootstrap_ci95'])}{_fallback_text(a['auroc']['interval'])}",
        *(f"  {name:<12} {a[name]['value']:.3f}  Clopper-Pearson {_pair(a[name]['clopper_pearson'])}  "
          f"bootstrap {_pair(a[name]['bootstrap_ci95'])}  ({a[name]['k']}/{a[name]['n']})"
          for name in ("sensitivity", "specificity", "accuracy")),
        f"  F1 {a['f1']['value']:.3f}, Brier {a['brier']['value']:.3f}, ECE {a['ece']['value']:.3f} "
        f"at the locked threshold {document['device']['threshold']:.4g}",
    ]
    lines.append(f"  bootstrap unit: {document['bootstrap']['unit']}"
                 + (f" ({a['n_patients']} patient(s) among {a['n_images']} images)" if a["n_patients"] else ""))
    if a["n_patients"] and a["n_patients"] < a["n_images"]:
        lines.append("  NOTE: several images per patient: DeLong and Clopper-Pearson (and the acceptance judged on "
                     "them) treat images as independent and are too narrow; compare the patient bootstrap")
    everything = document["all_inputs"]
    lines.append(f"  with refusals counted as failures: sensitivity {everything['sensitivity']['value']:.3f}, "
                 f"specificity {everything['specificity']['value']:.3f}")
    if document["acceptance"]:
        criteria = document["acceptance"]["criteria"]
        verdicts = ", ".join(f"{k} {'pass' if v['passed'] else 'FAIL'} ({_number(v['lower_bound'])} vs "
                             f"{v['criterion']:g}, {v['method']})" for k, v in criteria.items())
        lines.append(f"  acceptance (lower bounds): {verdicts}")
        lines += [f"    {k}: {v['note']}" for k, v in criteria.items() if v.get("note")]
    shift = document["shift"]
    if shift and shift.get("warning"):
        lines.append(f"  WARNING: {shift['warning']}")
    return lines


def _fallback_text(interval: dict) -> str:
    if not interval["delong_degenerate"]:
        return ""
    return f"  (DeLong degenerate: {interval['delong_degenerate']}; Newcombe score interval {_pair(interval['ci95'])})"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pair(interval) -> str:
    lo, hi = interval
    return "n/a" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"
