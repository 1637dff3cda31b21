"""``cxr-device compare``: a retrained (candidate) device against the released (baseline) one.

Both locked bundles score the same labelled inputs through the device runtime, exactly as
``assess`` does (:func:`validation.assessment.score`), each at its own locked threshold; nothing
is tuned. The comparison is paired on the inputs both devices scored (:mod:`validation.paired`):
the AUROC difference (DeLong for correlated ROC curves), the sensitivity and specificity
differences (Newcombe method 10, exact McNemar), the agreement of the decisions (Cohen's kappa).
Inputs either device left unscored are counted and listed separately, the change in refusals is
a finding of its own, and the verdict against the PCCP margins is ``met``, ``not met`` or ``not
enough data`` (:mod:`validation.margins`).

Outputs in ``OUT`` (``RUN/comparison/NAME`` with ``--run``): ``predictions.csv`` (every
labelled input with both devices' answers), ``comparison.json``, ``roc.png``, ``report.html``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_device.provenance import producer
from cxr_device.runtime.bundle import Bundle
from cxr_device.runtime.inference import POSITIVE
from cxr_device.runtime.pipeline import ACCEPTED
from cxr_device.safe_text import spreadsheet_cell

from . import figures as fig
from .assessment import OUTSIDE_SET, header_checks, score, write_outside_set
from .assessment_inputs import InputSet
from .comparison_report import write_report
from .margins import Margins, judge
from .metrics import finite
from .paired import agreement, paired_delong, paired_proportion

COMPARISON, PREDICTIONS, ROC, REPORT = "comparison.json", "predictions.csv", "roc.png", "report.html"
DEVICES = ("baseline", "candidate")
BOTH, BASELINE_ONLY, CANDIDATE_ONLY, NEITHER = "both", "baseline only", "candidate only", "neither"
ANSWER = ("status", "probability", "decision", "reason")
COLUMNS = ["key", "patient", "label", "scored_by", *(f"{d}_{a}" for d in DEVICES for a in ANSWER)]


def pair_scores(baseline: pd.DataFrame, candidate: pd.DataFrame) -> pd.DataFrame:
    """One row per labelled input with both devices' answers (frames of :func:`score` over the same
    inputs) and ``scored_by``: both, baseline only, candidate only or neither."""
    if list(baseline["key"]) != list(candidate["key"]):
        raise ValueError("the two devices did not score the same inputs in the same order")
    frame = baseline[["key", "patient", "label"]].copy()
    for device, scored in zip(DEVICES, (baseline, candidate)):
        for answer in ANSWER:
            frame[f"{device}_{answer}"] = scored[answer].to_numpy()
    by_b, by_c = frame["baseline_status"] == ACCEPTED, frame["candidate_status"] == ACCEPTED
    frame["scored_by"] = np.select([by_b & by_c, by_b, by_c], [BOTH, BASELINE_ONLY, CANDIDATE_ONLY], NEITHER)
    return frame[COLUMNS]


def refusal_summary(paired: pd.DataFrame) -> dict:
    """Who left which input unscored, with reasons; ``increase`` is the candidate's unscored share
    minus the baseline's (None without inputs)."""
    n = len(paired)
    counts = paired["scored_by"].value_counts()
    not_b = int((paired["baseline_status"] != ACCEPTED).sum())
    not_c = int((paired["candidate_status"] != ACCEPTED).sum())
    listed = ["key", "label", "baseline_status", "baseline_reason", "candidate_status", "candidate_reason"]
    rows = {kind: paired.loc[paired["scored_by"] == kind, listed].to_dict("records")
            for kind in (BASELINE_ONLY, CANDIDATE_ONLY, NEITHER)}
    newly, regained = int(counts.get(BASELINE_ONLY, 0)), int(counts.get(CANDIDATE_ONLY, 0))
    finding = None
    if newly or regained:
        finding = (f"the candidate leaves {newly} input(s) unscored that the baseline scored, and scores {regained} "
                   "that the baseline left unscored")
    return {"n_inputs": n, "scored_by_both": int(counts.get(BOTH, 0)), "not_scored_by_baseline": not_b,
            "not_scored_by_candidate": not_c, "increase": (not_c - not_b) / n if n else None,
            "by_status": {d: {str(k): int(v) for k, v in paired[f"{d}_status"].value_counts().sort_index().items()}
                          for d in DEVICES},
            "unscored_by_candidate_only": rows[BASELINE_ONLY], "unscored_by_baseline_only": rows[CANDIDATE_ONLY],
            "unscored_by_both": rows[NEITHER], "finding": finding}


def paired_statistics(both: pd.DataFrame) -> dict:
    """AUROC, sensitivity, specificity and agreement of the two devices on the inputs both scored."""
    labels = both["label"].to_numpy(int) == 1
    detected = {d: both[f"{d}_decision"].to_numpy(object) == POSITIVE for d in DEVICES}
    return {
        "auroc": paired_delong(both["baseline_probability"].to_numpy(float),
                               both["candidate_probability"].to_numpy(float), labels),
        "sensitivity": paired_proportion(detected["baseline"][labels], detected["candidate"][labels]),
        "specificity": paired_proportion(~detected["baseline"][~labels], ~detected["candidate"][~labels]),
        "agreement": agreement(detected["baseline"], detected["candidate"]),
    }


def compare(baseline: Bundle, candidate: Bundle, inputs: InputSet, out_dir: str | Path, name: str, margins: Margins,
            margins_source: str, progress: bool = False) -> dict:
    """Score ``inputs`` with both locked bundles; write predictions.csv, comparison.json, roc.png
    and report.html into ``out_dir``; return comparison.json's content."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paired = pair_scores(score(baseline, inputs, progress, "baseline"), score(candidate, inputs, progress, "candidate"))
    _write_predictions(paired, out / PREDICTIONS)
    write_outside_set(inputs, out)
    both = paired[paired["scored_by"] == BOTH]
    stats = paired_statistics(both)
    refusals = refusal_summary(paired)
    verdict = judge(margins, stats["auroc"], stats["sensitivity"], stats["specificity"], refusals)
    document = finite({
        "name": name,
        "verdict": verdict["verdict"],
        "margins": {**margins.model_dump(), "source": margins_source},
        "devices": {d: _describe(b) for d, b in zip(DEVICES, (baseline, candidate))},
        "same_device": baseline.device_sha256 == candidate.device_sha256,
        "inputs": {**inputs.description, "source": inputs.kind, "n_labelled": len(inputs.items),
                   "n_excluded": len(inputs.excluded), "excluded": inputs.excluded,
                   "n_outside_set": len(inputs.outside),
                   "outside_set_listed_in": OUTSIDE_SET if inputs.outside else None,
                   "n_positive": int((paired["label"] == 1).sum()), "n_negative": int((paired["label"] == 0).sum()),
                   "header_checks": header_checks(inputs)},
        "paired": {"n_cases": len(both), "n_patients": int(both["patient"].nunique()),
                   "n_positive": int((both["label"] == 1).sum()), "n_negative": int((both["label"] == 0).sum()),
                   "differences": "candidate - baseline",
                   "independence": "each case (image) is treated as independent; several images of one patient "
                                   "make the intervals somewhat too narrow"},
        **stats,
        "refusals": refusals,
        "judgement": verdict,
        "figures": _figure(out, both, stats, name),
        "report": REPORT,
        "produced_by": producer("compare", {"name": name, "margins": margins.model_dump()}),
    })
    (out / COMPARISON).write_text(json.dumps(document, indent=2) + "\n")
    write_report(document, out / REPORT, out)
    return document


def _describe(bundle: Bundle) -> dict:
    return {"device_json_sha256": bundle.device_sha256, "bundle": str(bundle.folder),
            "signature": bundle.signature.describe(), "threshold": bundle.threshold,
            "threshold_rule": bundle.meta["threshold"].get("rule"),
            "calibration": bundle.meta.get("calibration", {"method": "none"}).get("method", "none")}


def _figure(out: Path, both: pd.DataFrame, stats: dict, name: str) -> dict:
    labels = both["label"].to_numpy(int)
    if not (labels == 1).any() or not (labels == 0).any():
        return {}
    curves = {d: (both[f"{d}_probability"].to_numpy(float), stats["auroc"][d],
                  (stats["sensitivity"][d]["value"], stats["specificity"][d]["value"])) for d in DEVICES}
    fig.plot_paired_roc(curves, labels, f"ROC curves on {name} ({len(both)} inputs scored by both)", out / ROC)
    return {"roc": ROC}


def _write_predictions(frame: pd.DataFrame, path: Path) -> None:
    safe = frame.copy()
    for column in ("key", "patient", "baseline_reason", "candidate_reason"):
        safe[column] = safe[column].map(spreadsheet_cell)
    for device in DEVICES:
        safe[f"{device}_probability"] = safe[f"{device}_probability"].map(
            lambda p: "" if p is None or pd.isna(p) else repr(float(p)))
    safe.to_csv(path, index=False, lineterminator="\n")


def summary_lines(document: dict) -> list[str]:
    """What ``compare`` prints: counts, each difference with its interval and test, refusals, verdict."""
    inputs, paired, refusals = document["inputs"], document["paired"], document["refusals"]
    criteria = document["judgement"]["criteria"]
    lines = [(f"comparison {document['name']}: {inputs['n_labelled']} labelled inputs, {paired['n_cases']} scored by "
              f"both devices ({paired['n_positive']} positive, {paired['n_negative']} negative); not scored: "
              f"{refusals['not_scored_by_baseline']} by the baseline, {refusals['not_scored_by_candidate']} by the "
              f"candidate; {inputs['n_excluded']} excluded before scoring")]
    if document["same_device"]:
        lines.append("  note: baseline and candidate are the same locked device (same device.json sha256)")
    a = document["auroc"]
    lines.append(f"  AUROC        {_num(a['baseline'])} -> {_num(a['candidate'])}  difference {_signed(a['difference'])} "
                 f"95% CI {_pair(a['ci95'])}  p {_p(a['p_value'])} (paired DeLong){_margin(criteria, 'auroc')}")
    for name in ("sensitivity", "specificity"):
        s = document[name]
        lines.append(f"  {name:<12} {_num(s['baseline']['value'])} -> {_num(s['candidate']['value'])}  difference "
                     f"{_signed(s['difference'])} 95% CI {_pair(s['ci95'])} (Newcombe method 10)  McNemar exact p "
                     f"{_p(s['mcnemar']['p_value'])} ({s['table']['candidate_only']} gained, "
                     f"{s['table']['baseline_only']} lost of {s['baseline']['n']}){_margin(criteria, name)}")
    g = document["agreement"]
    if g["n"]:
        lines.append(f"  agreement    {100 * g['observed_agreement']:.1f}% of decisions, Cohen's kappa "
                     f"{_num(g['kappa'])}")
    r = criteria["refusals"]
    lines.append(f"  refusals     unscored share {_signed(r['increase'])} (allowed up to +{r['margin']:g}): "
                 f"{'met' if r['met'] else 'NOT met'}" + (f"; {refusals['finding']}" if refusals["finding"] else ""))
    lines.append(f"verdict: {document['verdict']} (margins: {document['margins']['source']})")
    lines += [f"  not enough data: {reason}" for reason in document["judgement"]["not_enough_data"]]
    return lines


def _margin(criteria: dict, name: str) -> str:
    row = criteria.get(name)
    if row is None:
        return "  (no margin)"
    return f"  margin {row['margin']:+.3g}: {'met' if row['met'] else 'NOT met'}"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _p(value) -> str:
    return "n/a" if value is None else "< 0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _pair(interval) -> str:
    lo, hi = interval
    return "n/a" if lo is None or hi is None else f"[{lo:+.3f}, {hi:+.3f}]"
