"""The risk file (ISO 14971): the risk management plan, the hazards, their controls, the
requirements implementing them, the tests verifying them, and the residual risks the run measures.

The file is ``risk/default_risks.yaml`` (package data) or the site's own (``risks.file`` in the
device profile), with ``risks.overrides`` replacing hazards of the same id or adding new ones. It
holds a ``plan`` - the severity and probability scales (each level defined in words, each
probability level as a frequency range per study), the acceptability matrix, the kinds of
control in their order of priority - and the ``hazards``, each typed
(:class:`fda_submission.profile.Hazard`): hazard, sequence of events, hazardous situation, harm,
ratings before and after its controls, and the controls. A site file that is a plain list of
hazards keeps the package's plan.

* :func:`verify_risks` lists every control that does not resolve - a requirement that is not in
  ``requirements.yaml`` or, with a JUnit report, has no passing test - and every residual risk the
  plan does not accept;
* :func:`measured_rates` and :func:`estimate_residuals` compute, for each hazard with an
  ``estimate``, the residual probability the run gives: P1 (an upper 95% Clopper-Pearson bound of
  a rate, from the standalone assessment of the intended population or, when there is none, the
  internal test split, times the share of studies concerned) x P2 (the file's), mapped onto the
  plan's probability levels; :func:`rating_problems` lists the ratings the run contradicts;
* :func:`benefit_risk` evaluates the overall residual risk.

The consistency check reports the problems (codes ``risk-control`` and ``risk-rating``); the
documents print the rows of :func:`risk_rows`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import SETTINGS, build
from cxr_device.yaml_io import load_yaml

from .profile import CONTROL_TYPES, Hazard, safe_text
from .trace import VERIFIED

ACCEPTABLE, ALARP, UNACCEPTABLE = "acceptable", "ALARP", "unacceptable"
REGIONS = (ACCEPTABLE, ALARP, UNACCEPTABLE)  # from the best to the worst
STANDALONE, INTERNAL = "standalone", "internal"


# --- the plan ------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(**SETTINGS)


Text = Annotated[str, Field(min_length=1)]


class SeverityLevel(_Model):
    level: Annotated[int, Field(ge=1, le=5)]
    name: Text
    definition: Text


class ProbabilityLevel(_Model):
    level: Annotated[int, Field(ge=1, le=5)]
    name: Text
    definition: Text
    at_least: Annotated[float, Field(ge=0, le=1)]
    below: Annotated[float, Field(gt=0, le=1)]


class ProbabilityScale(_Model):
    unit: Text
    definition: Text
    levels: list[ProbabilityLevel] = Field(min_length=2)


class Region(_Model):
    name: Text
    definition: Text


class Acceptability(_Model):
    regions: list[Region] = Field(min_length=1)
    matrix: list[list[Text]] = Field(min_length=1)  # rows: severity levels; columns: probability levels


class ControlType(_Model):
    type: Text
    name: Text
    definition: Text


class RiskPlan(_Model):
    """The risk management plan's data: scales, acceptability, kinds of control (in priority order)."""

    scope: Text
    verification: Text
    production_information: Text
    severity: list[SeverityLevel] = Field(min_length=2)
    probability: ProbabilityScale
    acceptability: Acceptability
    control_types: list[ControlType] = Field(min_length=1)
    overall: Text


def _check_plan(plan: dict, where: str) -> dict:
    """The plan's levels numbered 1, 2, ... in order, the probability ranges contiguous from 0 to 1,
    the matrix one row per severity and one column per probability level, naming regions of
    :data:`REGIONS`, and the control kinds those of ISO 14971 in its order."""
    def fail(what: str):
        raise CxrDeviceError(f"{where}: plan: {what}")

    for key, levels in (("severity", plan["severity"]), ("probability.levels", plan["probability"]["levels"])):
        if [item["level"] for item in levels] != list(range(1, len(levels) + 1)):
            fail(f"{key}: levels must be numbered 1, 2, ... in order")
    levels = plan["probability"]["levels"]
    if levels[0]["at_least"] != 0 or levels[-1]["below"] != 1:
        fail("probability.levels: the ranges must start at 0 and end at 1")
    for lower, upper in pairwise(levels):
        if not lower["at_least"] < lower["below"] == upper["at_least"]:
            fail(f"probability.levels: level {upper['level']} must start where level {lower['level']} ends")
    names = [r["name"] for r in plan["acceptability"]["regions"]]
    if sorted(names) != sorted(REGIONS):
        fail(f"acceptability.regions: expected the regions {', '.join(REGIONS)}")
    matrix = plan["acceptability"]["matrix"]
    if len(matrix) != len(plan["severity"]) or any(len(row) != len(levels) for row in matrix):
        fail("acceptability.matrix: one row per severity level, one column per probability level")
    if any(cell not in REGIONS for row in matrix for cell in row):
        fail(f"acceptability.matrix: every cell is one of {', '.join(REGIONS)}")
    if tuple(c["type"] for c in plan["control_types"]) != CONTROL_TYPES:
        fail(f"control_types: expected {', '.join(CONTROL_TYPES)}, in this order (the priority of ISO 14971)")
    return plan


@dataclass(frozen=True)
class RiskFile:
    """The risk file as loaded: its plan, its hazards (overrides applied) and where it came from."""

    plan: dict
    hazards: list[dict]
    path: str


def default_risk_path() -> Path:
    """The package's default risk file."""
    return Path(str(resources.files("fda_submission") / "risk" / "default_risks.yaml"))


def _plan_of(data: dict, where: str) -> dict:
    return _check_plan(safe_text(build(RiskPlan, f"{where}: plan", data).model_dump()), where)


def load_risk_file(profile: dict) -> RiskFile:
    """The plan and the hazards of the profile's risk file (default: the package's) with its
    overrides applied, each validated. Errors name the file and the hazard."""
    path = Path(profile["risks"]["file"]) if profile["risks"]["file"] else default_risk_path()
    data = load_yaml(path, "risk file")
    if isinstance(data, list):  # a plain list of hazards keeps the package's plan
        plan = _plan_of(load_yaml(default_risk_path(), "risk file")["plan"], str(default_risk_path()))
        items = data
    elif isinstance(data, dict) and set(data) == {"plan", "hazards"}:
        plan, items = _plan_of(data["plan"], str(path)), data["hazards"]
    else:
        raise CxrDeviceError(f"{path}: expected `plan:` and `hazards:` (or a list of hazards: id, hazard, sequence, "
                             "hazardous_situation, harm, severity, probability, controls, residual_severity, "
                             "residual_probability, ...)")
    if not isinstance(items, list) or not items:
        raise CxrDeviceError(f"{path}: hazards: expected a list of hazards")
    hazards: dict[str, dict] = {}
    for number, item in enumerate(items, 1):
        where = f"{path}: hazard {item.get('id', number) if isinstance(item, dict) else number}"
        hazard = safe_text(build(Hazard, where, item).model_dump())
        if hazard["id"] in hazards:
            raise CxrDeviceError(f"{path}: hazard id {hazard['id']} appears more than once")
        hazards[hazard["id"]] = hazard
    for hazard in profile["risks"]["overrides"]:
        hazards[hazard["id"]] = dict(hazard)
    return RiskFile(plan, [_with_requirements(h) for h in hazards.values()], str(path))


def load_risks(profile: dict) -> tuple[list[dict], str]:
    """The hazards of the profile's risk file and the file they came from (see :func:`load_risk_file`)."""
    risk_file = load_risk_file(profile)
    return risk_file.hazards, risk_file.path


def _with_requirements(hazard: dict) -> dict:
    """The hazard with ``requirements``: every requirement its controls name, once, in order."""
    named: list[str] = []
    for control in hazard["controls"]:
        named += [r for r in control["requirements"] if r not in named]
    return {**hazard, "requirements": named}


def default_plan() -> dict:
    """The plan of the package's risk file."""
    return _plan_of(load_yaml(default_risk_path(), "risk file")["plan"], str(default_risk_path()))


def risk_level(severity: int, probability: int, plan: dict | None = None) -> str:
    """The region of the plan's acceptability matrix (acceptable, ALARP or unacceptable)."""
    matrix = (plan or default_plan())["acceptability"]["matrix"]
    return str(matrix[int(severity) - 1][int(probability) - 1])


def probability_level(p: float, plan: dict) -> dict:
    """The probability level (``level``, ``name``) whose range holds ``p``."""
    levels = plan["probability"]["levels"]
    for item in levels:
        if item["at_least"] <= p < item["below"]:
            return {"level": item["level"], "name": item["name"]}
    return {"level": levels[-1]["level"], "name": levels[-1]["name"]}


def ordered_controls(controls: list[dict]) -> list[dict]:
    """The controls in the priority order of ISO 14971 (design, protective, information), the
    file's order kept within a kind."""
    return sorted(controls, key=lambda c: CONTROL_TYPES.index(str(c["type"])))


# --- controls: requirements and tests --------------------------------------------------------------
@dataclass(frozen=True)
class RiskProblem:
    """A control that does not resolve, or a residual risk the file itself does not accept."""

    hazard: str
    requirement: str | None
    problem: str
    found: str  # what the requirements file or the JUnit report says instead
    control: str | None = None  # the control's text, when the problem is one control's


def unresolved_requirements(named: list[str], requirement_ids: set[str],
                            trace_rows: list[dict] | None) -> list[tuple[str, str, str]]:
    """``(requirement, problem, found)`` for every requirement a control names that is not in
    requirements.yaml or, when a JUnit report is given (``trace_rows``), has no passing test."""
    status = {row["id"]: row["status"] for row in trace_rows} if trace_rows is not None else None
    out = []
    for rid in named:
        if rid not in requirement_ids:
            out.append((rid, f"{rid} is not a requirement of requirements.yaml: the control is not implemented by "
                             "any requirement", "no such requirement"))
        elif status is not None and status.get(rid) != VERIFIED:
            out.append((rid, f"{rid} is {status.get(rid, 'not in the report')} in the JUnit report: the control is "
                             "not verified by a passing test", str(status.get(rid, "not in the report"))))
    return out


def verification(named: list[str], trace_rows: list[dict] | None) -> list[dict]:
    """Each requirement a control names with its status and tests in the JUnit report (None and
    [] without one): ``{"id", "status", "tests"}``."""
    by_id = {row["id"]: row for row in trace_rows or []}
    return [{"id": rid, "status": by_id[rid]["status"] if rid in by_id else None,
             "tests": by_id[rid]["grouped"] if rid in by_id else []} for rid in named]


def verify_risks(hazards: list[dict], requirement_ids: set[str], trace_rows: list[dict] | None,
                 plan: dict | None = None) -> list[RiskProblem]:
    """Every control that names an unknown requirement, or (when a JUnit report is given) a
    requirement without a passing test; every hazard whose residual risk is higher than before
    the controls, or unacceptable in the plan's matrix."""
    plan = plan or default_plan()
    problems = []
    for h in hazards:
        for control in h["controls"]:
            problems += [RiskProblem(h["id"], rid, problem, found, control["text"])
                         for rid, problem, found in unresolved_requirements(control["requirements"], requirement_ids,
                                                                            trace_rows)]
        if h["residual_severity"] * h["residual_probability"] > h["severity"] * h["probability"]:
            problems.append(RiskProblem(h["id"], None, "residual risk is higher than the risk before the controls",
                                        f"before: {h['severity']} x {h['probability']}"))
        if risk_level(h["residual_severity"], h["residual_probability"], plan) == UNACCEPTABLE:
            problems.append(RiskProblem(h["id"], None, "residual risk is unacceptable",
                                        f"severity {h['residual_severity']} x probability {h['residual_probability']}"))
    return problems


# --- residual probabilities from the run -----------------------------------------------------------
#: What each measure counts, and which share of the studies can meet its hazardous situation.
MEASURES: dict[str, dict[str, str]] = {
    "false_negatives": {"rate": "false-negative rate", "counted": "pneumonia images not flagged",
                        "share": "prevalence"},
    "false_positives": {"rate": "false-positive rate", "counted": "images without pneumonia flagged",
                        "share": "complement"},
    "not_scored": {"rate": "share of inputs not scored (refused or unreadable)",
                   "counted": "inputs refused or unreadable", "share": "prevalence"},
}


def _counts(measure: str, source: dict, internal: bool) -> tuple[int, int] | None:
    """(k, n) of a measure in an assessment's ``accepted`` block or a metrics split."""
    if measure == "not_scored":
        if internal:
            return None  # the development images are not DICOM: the input rules were not applied to them
        scoring = source["scoring"]
        return int(scoring["n_not_scored"]), int(scoring["n_accepted"] + scoring["n_not_scored"])
    c = source["confusion"] if internal else source["accepted"]["confusion"]
    if measure == "false_negatives":
        return int(c["fn"]), int(c["tp"] + c["fn"])
    return int(c["fp"]), int(c["fp"] + c["tn"])


def intended_assessments(assessments: list[dict]) -> list[dict]:
    """Standalone assessments that are evidence for the intended use (scored, inside the
    population, not development data) - as the documents choose them."""
    return [a for a in assessments if a.get("accepted") and a.get("in_population") is not False
            and not a.get("development")]


def measured_rates(metrics: dict, assessments: list[dict], prevalence: float) -> dict[str, dict]:
    """Each measure of :data:`MEASURES` as the run gives it: ``k`` of ``n``, the upper bound of
    its 95% Clopper-Pearson interval, where it comes from (the standalone assessment of the
    intended population with the highest bound, else the internal test split), the share of
    studies it applies to and ``p1`` (bound x share); or ``{"unavailable": why}``."""
    from validation.intervals import clopper_pearson

    shares = {"prevalence": prevalence, "complement": 1 - prevalence}
    out: dict[str, dict] = {}
    evidence = intended_assessments(assessments)
    for measure, words in MEASURES.items():
        candidates = []
        for a in evidence:
            counts = _counts(measure, a, internal=False)
            if counts and counts[1]:
                candidates.append((counts, STANDALONE, str(a["name"]), a["file"]))
        if not candidates:
            counts = _counts(measure, metrics["splits"]["test"], internal=True)
            if counts and counts[1]:
                candidates.append((counts, INTERNAL, "the internal test split", "evaluation/metrics.json"))
        if not candidates:
            out[measure] = {"measure": measure, "unavailable": ("no standalone assessment of the intended population "
                                                                "counts it" if measure == "not_scored"
                                                                else "no case of this kind was scored")}
            continue
        scored = [(clopper_pearson(k, n)[1], k, n, basis, name, file) for (k, n), basis, name, file in candidates]
        upper, k, n, basis, name, file = max(scored, key=lambda item: item[0])
        share = shares[words["share"]]
        out[measure] = {"measure": measure, "rate": words["rate"], "counted": words["counted"], "k": k, "n": n,
                        "upper": upper, "basis": basis, "set": name, "file": file, "share": share,
                        "share_name": ("the intended-use prevalence" if words["share"] == "prevalence"
                                       else "one minus the intended-use prevalence"),
                        "p1": upper * share}
    return out


def estimate_residuals(hazards: list[dict], plan: dict, rates: dict[str, dict]) -> dict[str, dict]:
    """For each hazard with an ``estimate``: P1 from the run, P2 from the file, P = P1 x P2, the
    probability level P falls in, the level the file states, and whether the run contradicts it
    (its level is higher); or the reason no estimate can be made."""
    out = {}
    for h in hazards:
        spec = h.get("estimate")
        if not spec:
            continue
        rate = rates.get(spec["measure"]) or {"unavailable": f"unknown measure {spec['measure']}"}
        stated = {"level": h["residual_probability"],
                  "name": plan["probability"]["levels"][h["residual_probability"] - 1]["name"]}
        if "unavailable" in rate:
            out[h["id"]] = {"measure": spec["measure"], "p2": spec["p2"], "stated": stated,
                            "unavailable": rate["unavailable"], "contradicted": False}
            continue
        p = rate["p1"] * spec["p2"]
        level = probability_level(p, plan)
        out[h["id"]] = {"measure": spec["measure"], "rate": rate, "p1": rate["p1"], "p2": spec["p2"], "p": p,
                        "one_in": 1 / p, "level": level, "stated": stated,
                        "contradicted": level["level"] > stated["level"]}
    return out


@dataclass(frozen=True)
class RatingProblem:
    """A residual probability the file states and the run contradicts."""

    hazard: str
    stated: str  # "level 3 (occasional)"
    computed: str  # "level 4 (probable): P <= ... from ..."


def rating_problems(estimates: dict[str, dict]) -> list[RatingProblem]:
    """Every hazard whose residual probability, as the run estimates it, is on a higher level
    than the file states."""
    out = []
    for hazard, e in estimates.items():
        if e["contradicted"]:
            r = e["rate"]
            where = f"{r['set']} ({r['file']})"
            out.append(RatingProblem(
                hazard, f"residual probability level {e['stated']['level']} ({e['stated']['name']})",
                f"level {e['level']['level']} ({e['level']['name']}): P = P1 x P2 = {e['p1']:.3g} x {e['p2']:.3g} = "
                f"{e['p']:.3g}, P1 the upper 95% Clopper-Pearson bound of the {r['rate']} on {where}, "
                f"{r['k']} of {r['n']}, times {r['share_name']} {r['share']:.3g}"))
    return out


def benefit_risk(hazards: list[dict], plan: dict, estimates: dict[str, dict], problems: list[RiskProblem],
                 verified: bool) -> dict:
    """The overall residual risk: each hazard's residual region with the worse of the stated and
    the measured probability, the hazards by region, and the verdict - ``unacceptable`` (a
    residual risk is), ``open`` (a control does not resolve, or no JUnit report shows the controls
    verified), ``benefit`` (residual risks in the ALARP region: acceptable only if the clinical
    benefit outweighs them) or ``acceptable``."""
    regions: dict[str, list[str]] = {name: [] for name in REGIONS}
    residual = {}
    for h in hazards:
        measured = (estimates.get(h["id"]) or {}).get("level") or {}
        probability = max(h["residual_probability"], measured.get("level", 0))
        region = risk_level(h["residual_severity"], probability, plan)
        residual[h["id"]] = {"severity": h["residual_severity"], "probability": probability, "region": region,
                             "from_run": probability > h["residual_probability"]}
        regions[region].append(h["id"])
    unresolved = sorted({p.hazard for p in problems if p.requirement})
    verdict = "unacceptable" if regions[UNACCEPTABLE] else "open" if unresolved or not verified else \
        "benefit" if regions[ALARP] else "acceptable"
    return {"regions": regions, "residual": residual, "unresolved": unresolved, "verified": verified,
            "verdict": verdict}


def risk_management(risk_file: RiskFile, metrics: dict, assessments: list[dict], prevalence: float,
                    prevalence_source: str, problems: list[RiskProblem], verified: bool) -> dict:
    """The derived record of the risk file (plain data, ``derived.json``: ``risk_management``):
    the plan, the rates the run measures, each estimated residual probability, the ratings the
    run contradicts and the overall benefit-risk evaluation."""
    rates = measured_rates(metrics, assessments, prevalence)
    estimates = estimate_residuals(risk_file.hazards, risk_file.plan, rates)
    return {"plan": risk_file.plan, "prevalence": prevalence, "prevalence_source": prevalence_source,
            "rates": rates, "estimates": estimates,
            "contradicted": [p.hazard for p in rating_problems(estimates)],
            "benefit_risk": benefit_risk(risk_file.hazards, risk_file.plan, estimates, problems, verified)}


# --- evidence from the run shown beside a hazard ------------------------------------------------
def _fn(ctx: dict) -> str:
    c = ctx["metrics"]["splits"]["test"]["confusion"]
    return f"internal test split: {c['fn']} of {c['tp'] + c['fn']} pneumonia images missed"


def _fp(ctx: dict) -> str:
    c = ctx["metrics"]["splits"]["test"]["confusion"]
    return f"internal test split: {c['fp']} of {c['fp'] + c['tn']} images without pneumonia flagged"


def _refusals(ctx: dict) -> str:
    parts = [f"{a['name']}: {a['scoring']['n_not_scored']} of {a['inputs']['n_labelled']} inputs not scored"
             for a in ctx["assessments"]]
    return "; ".join(parts) or "no standalone assessment yet"


def _shift(ctx: dict) -> str:
    parts = [f"{a['name']}: {'operating point moved' if (a['shift'] or {}).get('warning') else 'no warning'}"
             for a in ctx["assessments"]]
    return "; ".join(parts) or "no standalone assessment yet: transfer not measured"


def _left_out(ctx: dict) -> str:
    return f"{ctx['left_out']['n']} image(s) left out"


def _calibration(ctx: dict) -> str:
    cal = ctx["calibration"]
    if cal.get("method", "none") == "none":
        return "no calibration fitted: the probability is a score, not a frequency"
    prevalence = cal.get("prevalence") or {}
    text = f"{cal['method']} scaling"
    if prevalence.get("fitted") is not None:
        text += f", fitted on data with a prevalence of {100 * prevalence['fitted']:.1f}%"
        if prevalence.get("intended") is not None:
            text += f"; intended-use prevalence {100 * prevalence['intended']:.1f}%" + \
                    (", offset adjusted to it" if prevalence.get("adjusted") else ", not adjusted")
    eces = [f"{a['name']}: ECE {a['accepted']['ece']['value']:.3f}" for a in ctx["assessments"] if a.get("accepted")]
    return text + (f"; {'; '.join(eces)}" if eces else "")


def _population(ctx: dict) -> str:
    parts = []
    for a in ctx["assessments"]:
        fit = a.get("population_fit")
        if fit and fit["n_with_age"]:
            parts.append(f"{a['name']}: {fit['n_inside']} of {fit['n_with_age']} inputs with a recorded age inside "
                         "the intended population")
        else:
            parts.append(f"{a['name']}: no age recorded")
    return "; ".join(parts) or "no standalone assessment yet: the population of use not measured"


EVIDENCE: dict[str, Callable[[dict], str]] = {
    "internal_false_negatives": _fn, "internal_false_positives": _fp, "assessment_refusals": _refusals,
    "assessment_shift": _shift, "left_out_images": _left_out, "calibration_prevalence": _calibration,
    "assessment_population": _population,
}


def risk_rows(hazards: list[dict], trace_rows: list[dict] | None, context: dict[str, Any]) -> list[dict]:
    """The hazards as the risk file prints them: levels and regions, the controls in their order
    of priority with the requirements, tests and latest results of each (when a JUnit report is
    given), the estimate from the run and the run evidence."""
    record = context["risk_management"]
    plan = record["plan"]
    severity = {item["level"]: item["name"] for item in plan["severity"]}
    probability = {item["level"]: item["name"] for item in plan["probability"]["levels"]}
    rows = []
    for h in hazards:
        evidence = EVIDENCE.get(h["evidence"] or "")
        controls = [{**c, "verification": verification(c["requirements"], trace_rows)}
                    for c in ordered_controls(list(h["controls"]))]
        rows.append({**h, "controls": controls,
                     "severity_name": severity[h["severity"]], "probability_name": probability[h["probability"]],
                     "residual_severity_name": severity[h["residual_severity"]],
                     "residual_probability_name": probability[h["residual_probability"]],
                     "level": risk_level(h["severity"], h["probability"], plan),
                     "residual_level": risk_level(h["residual_severity"], h["residual_probability"], plan),
                     "estimated": record["estimates"].get(str(h["id"])),  # plain keys: a traced one would
                     "overall": record["benefit_risk"]["residual"][str(h["id"])],  # print into the path
                     "verification": verification(h["requirements"], trace_rows),
                     "evidence_text": evidence(context) if evidence else (h["evidence"] or "")})
    return rows
