"""Known issues: what the run itself shows a reader must keep in mind, each naming its file; and
the unresolved anomalies of the software that the maintainers keep (``anomalies.yaml``).

Run issues are built from the evidence, never typed: the calibration (ECE before and after, the
class weight of the training loss), the transfer of the locked threshold and the shift the
assessments measured, acceptance criteria an assessment missed, inputs the assessments could not
score, assessments whose bootstrap could not resample patients, unstable subgroups, images left out, development images unlike the device's inputs, and
runtime licences that constrain distribution (:func:`known_issues`).

Anomalies are defects, limitations and weaknesses of the code itself, the same for every run:
each with its description, how it was found, its impact, the rationale for release and a CWE
where one applies (:func:`load_anomalies`). :func:`unresolved` puts both side by side for the
software documentation.
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import SETTINGS, build
from cxr_device.yaml_io import load_yaml

from .tracing import joined, log

ANOMALIES_FILE = "anomalies.yaml"
_Text = Annotated[str, Field(min_length=1)]


class Anomaly(BaseModel):
    """One unresolved anomaly of ``anomalies.yaml``."""

    model_config = ConfigDict(**SETTINGS)
    id: Annotated[str, Field(pattern=r"^ANOM-\d{3}$")]
    title: _Text
    description: _Text
    found_by: _Text
    impact: _Text
    rationale: _Text
    cwe: str | None = None

    @field_validator("cwe")
    @classmethod
    def _cwe(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"CWE-\d+", value):
            raise ValueError(f"{value!r} is not a CWE identifier (CWE-N)")
        return value


def anomalies_path() -> Path:
    """The package's anomalies file."""
    return Path(str(resources.files("fda_submission") / ANOMALIES_FILE))


def load_anomalies(path: str | Path | None = None) -> list[dict]:
    """The anomalies of ``path`` (default: the package's), each validated, ids unique, in file
    order: ``{"id", "title", "description", "found_by", "impact", "rationale", "cwe"}``."""
    path = Path(path) if path else anomalies_path()
    items = load_yaml(path, "anomalies file")
    if items is None:
        return []
    if not isinstance(items, list):
        raise CxrDeviceError(f"{path}: expected a list of anomalies (id, title, description, found_by, impact, "
                             "rationale, optional cwe)")
    out, seen = [], set()
    for number, item in enumerate(items, 1):
        where = f"{path}: anomaly {item.get('id', number) if isinstance(item, dict) else number}"
        anomaly = build(Anomaly, where, item).model_dump()
        if anomaly["id"] in seen:
            raise CxrDeviceError(f"{path}: anomaly id {anomaly['id']} appears more than once")
        seen.add(anomaly["id"])
        out.append(anomaly)
    return out


def cwe_url(cwe: str | None) -> str | None:
    """The CWE catalogue page of ``CWE-N``."""
    return f"https://cwe.mitre.org/data/definitions/{cwe.split('-')[1]}.html" if cwe else None


def unresolved(context: dict[str, Any], anomalies: list[dict] | None = None) -> dict:
    """``{"anomalies", "run", "file"}``: the maintained anomalies (with their CWE page) and the
    run's known issues (the context's, or built from it)."""
    items = load_anomalies() if anomalies is None else anomalies
    run = context.get("known_issues")
    return {"anomalies": [{**a, "cwe_url": cwe_url(a["cwe"])} for a in items],
            "run": run if run is not None else known_issues(context), "file": f"fda_submission/{ANOMALIES_FILE}"}


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def known_issues(context: dict[str, Any]) -> list[dict]:
    """The known issues of the run, in a fixed order: ``{"title", "text", "source"}``."""
    out: list[dict] = []

    def add(title: str, text: str, source: str) -> None:
        out.append({"title": title, "text": text, "source": source})

    metrics, cal = context["metrics"], context["calibration"]
    if cal.get("method", "none") != "none" and "val" in cal:
        imbalance = str((cal.get("training_loss") or {}).get("imbalance", "not recorded"))
        train = context["cohort"]["splits"]["train"]
        weight = ""
        if imbalance == "weighted_loss" and 0 < train["n_positive"] < train["n_images"]:
            ratio = (train["n_images"] - train["n_positive"]) / train["n_positive"]
            weight = (f" with positive-class weight {ratio:.3f} (negatives per positive of the training split, "
                      f"cohort/summary.json), which shifts the raw logits by about log {ratio:.3f} = {log(ratio):+.2f}")
        add("Calibration",
            f"The model's raw probabilities were miscalibrated: expected calibration error (ECE, ten equal-width bins) "
            f"{_f(cal['val']['before']['ece'])} on validation and {_f(cal['test']['before']['ece'])} on test before "
            f"{cal['method']} scaling, {_f(cal['val']['after']['ece'])} and {_f(cal['test']['after']['ece'])} after "
            f"(slope {cal['slope']:.4g}, offset {cal['offset']:.4g}, fitted on validation only). The training loss "
            f"handled class imbalance by '{imbalance.replace('_', ' ')}'{weight}; the calibration offset undoes that "
            "shift. Probabilities are calibrated to the development prevalence, not to a site's.",
            "evaluation/metrics.json: calibration")
    elif cal.get("method", "none") == "none":
        add("Calibration", "The device's probabilities are not calibrated (calibration method none): a probability is "
            "a score, not a frequency.", "evaluation/metrics.json: calibration")
    t = metrics["threshold"]
    add("Threshold and internal test split",
        f"The threshold {t['value']:.4g} ({t.get('scale', 'probability')}; raw model probability "
        f"{_f(t.get('raw_threshold'))}) was chosen on the validation split by {t['description']}. The internal test "
        "split was scored by the same `evaluate` step that chose it: internal test results are not a "
        "locked-before-scoring evaluation; only the standalone assessments are.", "evaluation/metrics.json: threshold")
    assessments = context["assessments"]
    if not assessments:
        add("No standalone evidence", "No standalone assessment of the locked device exists in this run "
            "(`cxr-device assess`): the internal results are the only evidence, and internal results are not "
            "standalone evidence.", "assessment/ (none)")
    for a in assessments:
        where = a["file"]
        shift = a.get("shift") or {}
        if shift.get("warning"):
            add(f"Threshold transfer: {a['name']}", f"{shift['warning']}.", f"{where}: shift.warning")
        moved = [r for r in shift.get("metrics", []) if r.get("covered") is False]
        if moved:
            parts = "; ".join(f"{r['metric']} {_f(r['external'])} vs internal {_f(r['internal'])} "
                              f"({_f(r['internal_ci95'][0])}-{_f(r['internal_ci95'][1])})" for r in moved)
            add(f"Shift: {a['name']}", f"Outside the internal 95% interval on this set: {parts}.",
                f"{where}: shift.metrics")
        acceptance = a.get("acceptance") or {}
        failed = [(k, v) for k, v in (acceptance.get("criteria") or {}).items() if not v["passed"]]
        if failed:
            parts = "; ".join(f"{k} lower bound {_f(v['lower_bound'])} ({v['method']}) below {v['criterion']:g}"
                              for k, v in failed)
            add(f"Acceptance not met: {a['name']}", f"{parts}.", f"{where}: acceptance")
        fit = a.get("population_fit")
        if fit and fit["n_with_age"] and fit["n_inside"] < fit["n_with_age"]:
            ages = context["population"]["age_text"]
            add(f"Outside the intended population: {a['name']}",
                f"{fit['n_with_age'] - fit['n_inside']:,} of the {fit['n_with_age']:,} inputs with a recorded age are "
                f"outside the intended population's ages ({ages}): this assessment is not evidence for the intended "
                "use, only for how the device behaves on other patients.", f"{fit['file']}: age_years")
        lost = a["inputs"]["n_excluded"] + a["scoring"]["n_not_scored"]
        if lost:
            add(f"Inputs not scored: {a['name']}", f"{a['inputs']['n_excluded']} labelled input(s) excluded before "
                f"scoring and {a['scoring']['n_not_scored']} refused or unreadable, of "
                f"{a['inputs']['n_labelled'] + a['inputs']['n_excluded']}; with refusals counted as failures "
                f"sensitivity is {_f(a['all_inputs']['sensitivity']['value'])} and specificity "
                f"{_f(a['all_inputs']['specificity']['value'])}.", f"{where}: scoring, all_inputs")
        scored = a.get("accepted") or {}
        if scored.get("n_patients") and scored["n_patients"] < scored["n_images"]:
            add(f"Several images per patient: {a['name']}",
                f"{scored['n_images']:,} scored images of {scored['n_patients']:,} patient(s). The validation plan's "
                "unit is one study per patient; the DeLong and Clopper-Pearson intervals, and the acceptance judged "
                "on them, treat every image as independent and are too narrow when a patient's images agree. The "
                "patient-bootstrap intervals account for it" + (", but over one patient they cannot vary at all."
                                                                 if scored["n_patients"] == 1 else "."),
                f"{where}: accepted.n_images, accepted.n_patients")
        unit = (a.get("bootstrap") or {}).get("unit")
        if unit and unit != "patient":
            add(f"Bootstrap not by patient: {a['name']}", f"The bootstrap unit of this set is '{unit}': inputs "
                "without a patient id are resampled as independent images, so if several are of one patient their "
                "bootstrap intervals are too narrow.", f"{where}: bootstrap.unit")
        if a["scoring"].get("header_checks", "").startswith("none possible"):
            add(f"Input rules not exercised: {a['name']}", "The assessed images are PNG/JPEG files: the locked "
                "DICOM header rules could not be applied, so this set does not show how the rules treat the "
                "population's DICOM studies.", f"{where}: scoring.header_checks")
        unstable = [r for r in a.get("subgroups", []) if r.get("unstable")]
        if unstable:
            add(f"Unstable subgroups: {a['name']}", ", ".join(f"{r['group']} {r['level']}" for r in unstable)
                + " have fewer than ten positive or negative images: their performance is not established.",
                f"{where}: subgroups")
    unstable = [r for r in metrics.get("subgroups", {}).get("test", []) if r["unstable"]]
    if unstable:
        add("Unstable internal subgroups", ", ".join(f"{r['group']} {r['level']}" for r in unstable)
            + " have fewer than ten positive or negative internal test images.", "evaluation/metrics.json: subgroups")
    if context["population"]["group"] != "adult" and any(r.get("group") == "age" for a in assessments
                                                          for r in a.get("subgroups", [])):
        used = {str(r["level"]): r["level"] for a in assessments for r in a.get("subgroups", [])
                if r.get("group") == "age"}  # the bands as the assessments recorded them, in their order
        add("Age bands of the assessments", f"The assessments report age with the bands of validation/subgroups.py "
            f"({joined(used.values(), ', ')}), not the population's ({joined(context['population']['bands'], ', ')}).",
            "assessment/*/assessment.json: subgroups, profile: population")
    left_out = context["left_out"]
    if left_out["n"]:
        add("Images left out", f"{left_out['n']} development image(s) could not be decoded and were left out; each is "
            "listed with its reason in the algorithm description.", "model/train_summary.json, evaluation/metrics.json")
    images = context["development_images"]
    if not images["dicom"]:
        sample = images["sample"]
        size = (f"; the {sample['n']} sampled training images measure {sample['min_side']} to {sample['max_side']} px, "
                f"modes {', '.join(f'{k} {v}' for k, v in sample['modes'].items())}") if sample["n"] else ""
        relation = context["profile"]["training_data"]["relation_to_dicom"]
        add("Development images are not the device's inputs",
            f"The development images are {', '.join(f'{k} {v:,}' for k, v in images['formats'].items())}{size}. "
            + (f"Relation to the DICOM inputs (profile: training_data.relation_to_dicom): {relation}" if relation
               else "How they relate to the DICOM inputs the device reads is not stated."),
            "cohort/cohort.csv, image headers")
    kinds: dict[str, list[str]] = {}  # what each constrains -> the licences that do
    for row in context["soup_licences"]:
        if row["constraint"]:
            kinds.setdefault(row["constraint"], []).append(row["licence"])
    if kinds:
        add("Licences that constrain distribution",
            "Runtime distributions carry licences that constrain how the device may be distributed - "
            + "; ".join(f"{kind}: " + ", ".join(f"{licence}" for licence in licences)  # f-strings keep the traces
                        for kind, licences in kinds.items())
            + ". Each distribution is listed with its licence in appendix B of the appendices (SOUP licences and "
            "SOUP tables), to be reviewed before the device is distributed.", context["sbom_name"])
    return out
