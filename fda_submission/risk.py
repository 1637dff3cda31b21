"""The risk file: hazards, their controls, the requirements implementing them and the tests verifying them.

The hazards come from ``risk/default_risks.yaml`` (package data) or the site's own file
(``risks.file`` in the device profile), with ``risks.overrides`` replacing hazards of the same id
or adding new ones. Each hazard is typed (:class:`fda_submission.profile.Hazard`). Every control
must resolve to requirements of ``requirements.yaml``; with a JUnit report (``--junit``) each of
those requirements must have a passing test (:func:`fda_submission.trace.matrix_rows`).
:func:`verify_risks` lists every control that does not resolve; the consistency check reports
them and the documents refuse to render on them.

Risk levels: severity x probability (1-5 each): up to 4 acceptable, 5 to 12 acceptable only as low as
reasonably practicable with a benefit-risk review (ALARP), 15 and more unacceptable.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import build
from cxr_device.yaml_io import load_yaml

from .profile import Hazard
from .trace import VERIFIED

ACCEPTABLE, ALARP, UNACCEPTABLE = "acceptable", "ALARP", "unacceptable"


def default_risk_path() -> Path:
    """The package's default risk file."""
    return Path(str(resources.files("fda_submission") / "risk" / "default_risks.yaml"))


def load_risks(profile: dict) -> tuple[list[dict], str]:
    """The hazards of the profile's risk file (default: the package's) with its overrides applied,
    each validated; and the file they came from. Errors name the file and the hazard."""
    path = Path(profile["risks"]["file"]) if profile["risks"]["file"] else default_risk_path()
    items = load_yaml(path, "risk file")
    if not isinstance(items, list) or not items:
        raise CxrDeviceError(f"{path}: expected a list of hazards (id, hazard, cause, harm, severity, probability, "
                             "mitigations, requirements, residual_severity, residual_probability)")
    hazards: dict[str, dict] = {}
    for number, item in enumerate(items, 1):
        where = f"{path}: hazard {item.get('id', number) if isinstance(item, dict) else number}"
        hazard = build(Hazard, where, item).model_dump()
        if hazard["id"] in hazards:
            raise CxrDeviceError(f"{path}: hazard id {hazard['id']} appears more than once")
        hazards[hazard["id"]] = hazard
    for hazard in profile["risks"]["overrides"]:
        hazards[hazard["id"]] = dict(hazard)
    return list(hazards.values()), str(path)


def risk_level(severity: int, probability: int) -> str:
    """acceptable, ALARP or unacceptable (see the module docstring)."""
    score = severity * probability
    return ACCEPTABLE if score <= 4 else ALARP if score <= 12 else UNACCEPTABLE


@dataclass(frozen=True)
class RiskProblem:
    """A control that does not resolve, or a residual risk the file itself does not accept."""

    hazard: str
    requirement: str | None
    problem: str
    found: str  # what the requirements file or the JUnit report says instead


def unresolved_requirements(named: list[str], requirement_ids: set[str],
                            trace_rows: list[dict] | None) -> list[tuple[str, str, str]]:
    """``(requirement, problem, found)`` for every requirement a control names that is not in
    requirements.yaml or, when a JUnit report is given (``trace_rows``), has no passing test.
    Shared by the risk file and the threat model (fda_submission/security/threat_model.py)."""
    status = {row["id"]: row["status"] for row in trace_rows} if trace_rows is not None else None
    out = []
    for rid in named:
        if rid not in requirement_ids:
            out.append((rid, (f"{rid} is not a requirement of requirements.yaml: the control is not implemented by "
                              "any requirement"), "no such requirement"))
        elif status is not None and status.get(rid) != VERIFIED:
            out.append((rid, (f"{rid} is {status.get(rid, 'not in the report')} in the JUnit report: the control is "
                              "not verified by a passing test"), str(status.get(rid, "not in the report"))))
    return out


def verification(named: list[str], trace_rows: list[dict] | None) -> list[dict]:
    """Each requirement a control names with its status and tests in the JUnit report (None and
    [] without one): ``{"id", "status", "tests"}``."""
    by_id = {row["id"]: row for row in trace_rows or []}
    return [{"id": rid, "status": by_id[rid]["status"] if rid in by_id else None,
             "tests": by_id[rid]["grouped"] if rid in by_id else []} for rid in named]


def verify_risks(hazards: list[dict], requirement_ids: set[str], trace_rows: list[dict] | None) -> list[RiskProblem]:
    """Every hazard whose control names an unknown requirement, whose requirement has no passing
    test in the JUnit report (when one is given), whose residual risk is higher than before the
    controls, or whose residual risk is unacceptable."""
    problems = []
    for h in hazards:
        problems += [RiskProblem(h["id"], rid, problem, found)
                     for rid, problem, found in unresolved_requirements(h["requirements"], requirement_ids, trace_rows)]
        if h["residual_severity"] * h["residual_probability"] > h["severity"] * h["probability"]:
            problems.append(RiskProblem(h["id"], None, "residual risk is higher than the risk before the controls",
                                        f"before: {h['severity']} x {h['probability']}"))
        if risk_level(h["residual_severity"], h["residual_probability"]) == UNACCEPTABLE:
            problems.append(RiskProblem(h["id"], None, "residual risk is unacceptable",
                                        f"severity {h['residual_severity']} x probability {h['residual_probability']}"))
    return problems


# --- evidence from the run shown beside a hazard ------------------------------------------------
def _fn(ctx: dict) -> str:
    c = ctx["metrics"]["splits"]["test"]["confusion"]
    return f"internal test split: {c['fn']} of {c['tp'] + c['fn']} pneumonia images missed (evaluation/metrics.json)"


def _fp(ctx: dict) -> str:
    c = ctx["metrics"]["splits"]["test"]["confusion"]
    return f"internal test split: {c['fp']} of {c['fp'] + c['tn']} images without pneumonia flagged " \
           "(evaluation/metrics.json)"


def _refusals(ctx: dict) -> str:
    parts = [f"{a['name']}: {a['scoring']['n_not_scored']} of {a['inputs']['n_labelled']} inputs not scored "
             f"(assessment/{a['name']}/assessment.json)" for a in ctx["assessments"]]
    return "; ".join(parts) or "no standalone assessment yet"


def _shift(ctx: dict) -> str:
    parts = [f"{a['name']}: {'operating point moved' if (a['shift'] or {}).get('warning') else 'no warning'} "
             f"(assessment/{a['name']}/assessment.json)" for a in ctx["assessments"]]
    return "; ".join(parts) or "no standalone assessment yet: transfer not measured"


def _left_out(ctx: dict) -> str:
    return f"{ctx['left_out']['n']} image(s) left out (model/train_summary.json, evaluation/metrics.json)"


EVIDENCE: dict[str, Callable[[dict], str]] = {
    "internal_false_negatives": _fn, "internal_false_positives": _fp, "assessment_refusals": _refusals,
    "assessment_shift": _shift, "left_out_images": _left_out,
}


def risk_rows(hazards: list[dict], trace_rows: list[dict] | None, context: dict[str, Any]) -> list[dict]:
    """The hazards as the risk appendix prints them: levels, requirements with their tests and
    latest results (when a JUnit report is given) and the run evidence."""
    rows = []
    for h in hazards:
        evidence = EVIDENCE.get(h["evidence"] or "")
        rows.append({**h, "level": risk_level(h["severity"], h["probability"]),
                     "residual_level": risk_level(h["residual_severity"], h["residual_probability"]),
                     "verification": verification(h["requirements"], trace_rows),
                     "evidence_text": evidence(context) if evidence else (h["evidence"] or "")})
    return rows
