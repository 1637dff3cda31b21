"""The consistency check: contradictions between the run, the locked bundle, the assessments and
the device profile, and claims the documents make that the run does not back.

Every finding names both sides: where each value comes from (a file of the run and its field,
or a profile key) and what it says. ``cxr-device submission`` runs the check before rendering
and refuses to render while a finding is open (unless ``--allow-findings``: then every
document lists the open findings at its top); ``cxr-device submission --check`` prints them.

What is compared (each check is a function below, named in the finding's ``code``):

* one device: the sha256 of ``bundle/device.json`` against each assessment's
  ``device.device_json_sha256``; the bundle's own hashes (weights, rules, its content hash);
  ``metrics.json`` and ``cohort.csv`` against the hashes device.json locked; the threshold and the
  calibration of device.json against metrics.json and each assessment;
* evidence: at least one standalone assessment (internal results are never the only evidence);
  each assessment judged against the profile's acceptance criteria and prevalence;
* population: the profile's intended population against the locked input rules (age, view,
  modality rules) and against the development data (a pediatric set for an adult population);
* development images against the input rules: DICOM or not, pixel size, samples per pixel
  ("the device would refuse its own training data"), unless the profile states how they relate;
* the plan: acceptance criteria that no study size can show at the expected performance;
* the risk file: every control resolves to a requirement (and, with a JUnit report, a passing test),
  no residual rating the run contradicts, every use-related hazard of the usability file in it;
* the threat model and the software documentation: every security control resolves the same way,
  views and labeling agree with the code, the documented data flow exists, the documentation
  level agrees with the risk file;
* the claim: a regulation or product code of the other claim; profile texts and documents that
  say what the other claim says (``claims.yaml``);
* the recipe: every setting of ``model/config.yaml`` that shapes the model is one the algorithm
  description states;
* document control: an issue date before the device was locked;
* claims: phrases in the rendered documents that need evidence the run does not hold ("never
  seen" of an internal split, site DICOM the run never scored, ...), who reads every study
  against the profile's readers, terms used but defined nowhere.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_device.hashing import sha256_file
from cxr_device.run_layout import COHORT_CSV, RunLayout
from cxr_device.runtime.bundle import canonical_hash

from . import wording
from .claims import other_claim_statements, pair_contradiction
from .profile import MULTILINE
from .training_data import samples_per_pixel

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Side:
    """One side of a contradiction: where the value comes from, and the value."""

    source: str
    value: str


@dataclass(frozen=True)
class Finding:
    """A contradiction (or an unbacked claim) between two sources."""

    code: str
    message: str
    left: Side
    right: Side

    def lines(self) -> list[str]:
        """The finding as printed: the message, then each side."""
        return [f"[{self.code}] {self.message}", f"    {self.left.source}: {self.left.value}",
                f"    {self.right.source}: {self.right.value}"]

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "left": vars(self.left), "right": vars(self.right)}


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=TOLERANCE)


# --- one device ---------------------------------------------------------------------------------
def check_identity(ctx: dict) -> list[Finding]:
    """Assessments of another device; a bundle whose files or content no longer match device.json;
    metrics.json or cohort.csv changed since the device was locked."""
    out = []
    run = RunLayout(ctx["run"]["path"])
    device, sha = ctx["device"], ctx["identity"]["device_sha256"]
    here = Side("bundle/device.json (sha256 of its bytes)", sha)
    for a in ctx["assessments"]:
        theirs = a["device"]["device_json_sha256"]
        if theirs != sha:
            out.append(Finding("identity-assessment", f"assessment {a['name']} was made with another device than the "
                               "one the documents describe", Side(f"{a['file']}: device.device_json_sha256", theirs),
                               here))
    if device.get("content_sha256") != canonical_hash(device):
        out.append(Finding("bundle-content", "device.json was edited after the bundle was locked",
                           Side("bundle/device.json: content_sha256", str(device.get("content_sha256"))),
                           Side("canonical JSON of bundle/device.json", canonical_hash(device))))
    for name, expected in device.get("files", {}).items():
        path = run.bundle / name
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != expected:
            out.append(Finding("bundle-file", f"bundle/{name} is not the file the device was locked with",
                               Side(f"bundle/device.json: files.{name}", expected), Side(f"bundle/{name}", actual)))
    locked = (device.get("evaluation") or {}).get("metrics_json_sha256")
    if locked and run.metrics.is_file() and sha256_file(run.metrics) != locked:
        out.append(Finding("evaluation-changed", "evaluation/metrics.json changed after the device was locked: the "
                           "documents would report an evaluation the device was not locked with",
                           Side("bundle/device.json: evaluation.metrics_json_sha256", locked),
                           Side("evaluation/metrics.json (sha256)", sha256_file(run.metrics))))
    cohort_csv = Path(ctx["train_summary"].get("cohort", {}).get("dir") or run.cohort) / COHORT_CSV
    trained_on = device.get("training_cohort_sha256")
    if trained_on and cohort_csv.is_file() and sha256_file(cohort_csv) != trained_on:
        out.append(Finding("cohort-changed", "the cohort is not the one the device was trained on",
                           Side("bundle/device.json: training_cohort_sha256", trained_on),
                           Side("cohort/cohort.csv (sha256)", sha256_file(cohort_csv))))
    return out


def check_operating_point(ctx: dict) -> list[Finding]:
    """The threshold and calibration of device.json against metrics.json and each assessment."""
    out = []
    device, metrics = ctx["device"], ctx["metrics"]
    locked = device["threshold"]
    if not _close(locked["value"], metrics["threshold"]["value"]) or locked.get("rule") != metrics["threshold"]["rule"]:
        out.append(Finding("threshold", "the locked threshold is not the one the evaluation reports",
                           Side("bundle/device.json: threshold", f"{locked['value']!r} ({locked.get('rule')})"),
                           Side("evaluation/metrics.json: threshold",
                                f"{metrics['threshold']['value']!r} ({metrics['threshold']['rule']})")))
    dcal, mcal = device.get("calibration") or {"method": "none"}, metrics.get("calibration") or {"method": "none"}
    if dcal.get("method") != mcal.get("method") or not all(_close(dcal.get(k, 1.0 if k == "slope" else 0.0),
                                                                  mcal.get(k, 1.0 if k == "slope" else 0.0))
                                                           for k in ("slope", "offset")):
        out.append(Finding("calibration", "the locked calibration is not the one the evaluation reports",
                           Side("bundle/device.json: calibration", _cal(dcal)),
                           Side("evaluation/metrics.json: calibration", _cal(mcal))))
    for a in ctx["assessments"]:
        if not _close(a["device"]["threshold"], locked["value"]):
            out.append(Finding("threshold-assessment", f"assessment {a['name']} used another threshold",
                               Side(f"{a['file']}: device.threshold", repr(a["device"]["threshold"])),
                               Side("bundle/device.json: threshold.value", repr(locked["value"]))))
    return out


def _cal(c: dict) -> str:
    return f"{c.get('method')} (slope {c.get('slope', 1.0)!r}, offset {c.get('offset', 0.0)!r})"


# --- evidence -----------------------------------------------------------------------------------
#: The non-inferiority margins of ``cxr-device compare`` that the PCCP declares (profile ``pccp.margins``).
MARGINS = ("auroc", "sensitivity", "specificity", "refusal_increase")


def check_evidence(ctx: dict) -> list[Finding]:
    """At least one standalone assessment, each judged against the profile's criteria and prevalence;
    every comparison judged against the PCCP's margins."""
    profile, out = ctx["profile"], []
    if not ctx["assessments"]:
        out.append(Finding("no-standalone-evidence", "internal results are the only evidence: no standalone "
                           "assessment of the locked device exists (run `cxr-device assess`)",
                           Side("assessment/", "no assessment.json"),
                           Side("evaluation/metrics.json", "internal validation and test splits of the "
                                "development data")))
    criteria = profile["acceptance"]
    for a in ctx["assessments"]:
        judged = (a.get("acceptance") or {}).get("criteria")
        used = {k: v["criterion"] for k, v in judged.items()} if judged else None
        if a.get("accepted") is not None and used != criteria:
            out.append(Finding("acceptance-criteria", f"assessment {a['name']} was not judged against the profile's "
                               "acceptance criteria", Side(f"{a['file']}: acceptance.criteria", json.dumps(used)),
                               Side("profile: acceptance", json.dumps(criteria))))
        at = a.get("predictive_values_at_intended_prevalence") or {}
        if profile["expected_prevalence"] and at and not _close(at.get("prevalence"), profile["expected_prevalence"]):
            out.append(Finding("prevalence", f"assessment {a['name']} used another intended-use prevalence",
                               Side(f"{a['file']}: predictive_values_at_intended_prevalence.prevalence",
                                    repr(at.get("prevalence"))),
                               Side("profile: expected_prevalence", repr(profile["expected_prevalence"]))))
    declared = {k: profile["pccp"]["margins"].get(k) for k in MARGINS}
    for c in ctx["comparisons"]:
        used = {k: c["margins"].get(k) for k in MARGINS}
        if used != declared:
            out.append(Finding("pccp-margins", f"comparison {c['name']} was judged against other margins than the "
                               "PCCP declares", Side(f"{c['file']}: margins", json.dumps(used)),
                               Side("profile: pccp.margins", json.dumps(declared))))
    return out


# --- population ---------------------------------------------------------------------------------
def _rule_with(ctx: dict, attribute: str):
    return next((r for r in ctx["rules_set"].rules if attribute in r.attributes and r.severity == "error"), None)


def check_population(ctx: dict) -> list[Finding]:
    """The intended population against the locked input rules and the development data."""
    out = []
    pop = ctx["profile"]["population"]
    ages = pop["age_years"]
    declared = Side("profile: population.age_years", f"{ages['min']:g} to {ages['max']:g} years")
    rule = next((r for r in ctx["rules_set"].rules if r.age_range is not None), None)
    if rule is None:
        out.append(Finding("population-age-rule", "the locked input rules do not check the patient's age, but the "
                           "intended population has an age range", declared,
                           Side("bundle/input_rules.yaml", "no age_range rule")))
    elif not (_close(rule.age_range[0], ages["min"]) and _close(rule.age_range[1], ages["max"])):
        out.append(Finding("population-age-rule", "the locked input rules accept other ages than the intended "
                           "population", declared,
                           Side(f"bundle/input_rules.yaml: rule {rule.id}", rule.expected())))
    if rule is not None and rule.optional == pop.get("age_required", True):
        wanted = "required" if pop.get("age_required", True) else "optional"
        out.append(Finding("population-age-required", "the locked age rule and the profile disagree on images "
                           "whose age is missing or unreadable (refused when age is required, scored when optional)",
                           Side("profile: population.age_required", wanted),
                           Side(f"bundle/input_rules.yaml: rule {rule.id}",
                                "optional: scored" if rule.optional else "required: refused")))
    for attribute, key in (("ViewPosition", "views"), ("Modality", "modalities")):
        rule = _rule_with(ctx, attribute)
        wanted = {v.strip().upper() for v in pop[key]}
        if rule is None or rule.allowed is None:
            out.append(Finding(f"population-{key}-rule", f"the locked input rules do not restrict {attribute}, but the "
                               f"intended population does", Side(f"profile: population.{key}", ", ".join(pop[key])),
                               Side("bundle/input_rules.yaml", f"no {attribute} rule with allowed values")))
        elif set(rule.allowed) != wanted:
            out.append(Finding(f"population-{key}-rule", f"the locked input rules accept other {attribute} values than "
                               "the intended population", Side(f"profile: population.{key}", ", ".join(sorted(wanted))),
                               Side(f"bundle/input_rules.yaml: rule {rule.id}", ", ".join(sorted(rule.allowed)))))
    cohort = ctx["cohort"]
    if ctx["dataset"] == "pediatric" and ages["min"] >= 18:
        out.append(Finding("population-data", "the development data are pediatric but the intended population is "
                           "adult", declared, Side("cohort/summary.json: dataset", "pediatric")))
    recorded = [s["age"] for s in cohort["splits"].values() if s["age"]["n"]]
    if recorded:
        lo, hi = min(a["min"] for a in recorded), max(a["max"] for a in recorded)
        if hi < ages["min"] or lo > ages["max"]:
            out.append(Finding("population-data", "the development data hold no patient of the intended population's "
                               "ages", declared, Side("cohort/summary.json: splits.*.age", f"{lo:g} to {hi:g} years")))
    return out


def check_development_images(ctx: dict) -> list[Finding]:
    """"The device would refuse its own training data": development images that are not DICOM, are
    smaller than the rules' minimum rows/columns or have more samples per pixel than allowed -
    a finding unless the profile states how they relate to the DICOM inputs."""
    if ctx["profile"]["training_data"]["relation_to_dicom"]:
        return []
    images, out = ctx["development_images"], []
    unstated = Side("profile: training_data.relation_to_dicom", "not stated")
    if not images["dicom"]:
        kinds = ", ".join(f"{k} {v:,}" for k, v in images["formats"].items())
        out.append(Finding("training-data-format", "the device reads DICOM and applies its input rules, but the "
                           "development images are other files, and the documents do not say how they relate to "
                           "the DICOM path", Side("cohort/cohort.csv: image files", kinds), unstated))
    sample = images["sample"]
    if sample["n"]:
        for attribute in ("Rows", "Columns"):
            rule = _rule_with(ctx, attribute)
            if rule is not None and rule.range is not None and sample["min_side"] < rule.range[0]:
                out.append(Finding("training-data-size", "the device would refuse its own training data, as the "
                                   f"development images are smaller than rule {rule.id} allows",
                                   Side("image headers of the sampled training images (cohort/cohort.csv)",
                                        f"{sample['min_side']} to {sample['max_side']} px"),
                                   Side(f"bundle/input_rules.yaml: rule {rule.id}", rule.expected())))
                break
        rule = _rule_with(ctx, "SamplesPerPixel")
        samples = sorted({samples_per_pixel(m) for m in sample["modes"]})
        if rule is not None and rule.allowed is not None and any(str(s) not in rule.allowed for s in samples):
            out.append(Finding("training-data-samples", "the device would refuse its own training data, as the "
                               f"development images have samples per pixel that rule {rule.id} refuses",
                               Side("image headers of the sampled training images (cohort/cohort.csv)",
                                    ", ".join(f"{m} ({samples_per_pixel(m)} per pixel) x{n}"
                                              for m, n in sample["modes"].items())),
                               Side(f"bundle/input_rules.yaml: rule {rule.id}", rule.expected())))
    return out


# --- plan, risk, document control ----------------------------------------------------------------
def check_plan(ctx: dict) -> list[Finding]:
    """Acceptance criteria no study size can show at the expected performance."""
    plan = ctx["sample_size"]
    return [Finding("plan-unreachable", f"no study size can show the {name} criterion: the expected value does not "
                    "exceed it", Side(f"profile: acceptance.{name}", f"{plan['criteria'][name]:g}"),
                    Side(f"evaluation/metrics.json: splits.test.{name} (the planning value: lower bound of its exact or DeLong 95% interval)",
                         f"{plan['expected'][name]:.3f}"))
            for name in plan["unreachable"]]


def check_risks(ctx: dict) -> list[Finding]:
    """Risk controls that do not resolve to a (verified) requirement, unacceptable residual risks,
    residual probabilities the run contradicts, and use-related hazards of the usability file that
    are not in the risk file."""
    from .risk import rating_problems

    out = []
    for p in ctx["risk_problems"]:
        where = "the JUnit report" if p.found not in ("no such requirement",) and p.requirement else \
            "fda_submission/requirements.yaml" if p.requirement else "the risk acceptability matrix (risk file: plan)"
        control = f" (control: {p.control})" if p.control else ""
        out.append(Finding("risk-control", f"hazard {p.hazard}: {p.problem}{control}",
                           Side(f"{ctx['risk_file']}: {p.hazard}", p.requirement or "residual risk"), Side(where, p.found)))
    for p in rating_problems((ctx.get("risk_management") or {}).get("estimates", {})):
        out.append(Finding("risk-rating", f"hazard {p.hazard}: the run gives a higher residual probability than the "
                           "risk file states", Side(f"{ctx['risk_file']}: {p.hazard}: residual_probability", p.stated),
                           Side("the run (derived.json: risk_management.estimates)", p.computed)))
    hazards, usability = {h["id"] for h in ctx["hazards"]}, ctx.get("usability") or {}
    named = usability.get("critical_tasks", []) + (usability.get("use_problems") or {}).get("items", [])
    for item in named:
        for hazard in item["hazards"]:
            if hazard not in hazards:
                out.append(Finding("usability-hazard", f"{item['id']} of the usability file names a hazard the risk "
                                   "file does not hold", Side(f"{usability.get('file')}: {item['id']}", hazard),
                                   Side(ctx["risk_file"], "no such hazard")))
    return out


def check_document_date(ctx: dict) -> list[Finding]:
    """An issue date (profile) before the device was locked (manifest.json)."""
    given = ctx["profile"]["document_control"]["date"]
    if not given:
        return []
    manifest = RunLayout(ctx["run"]["path"]).manifest
    try:
        locked = json.loads(manifest.read_text())["steps"]["evaluate"]["finished_at"][:10]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if given.isoformat() < locked:
        return [Finding("document-date", "the documents are dated before the device they describe was locked",
                        Side("profile: document_control.date", given.isoformat()),
                        Side("manifest.json: steps.evaluate.finished_at", locked))]
    return []


def check_software_and_security(ctx: dict) -> list[Finding]:
    """The software documentation and the threat model: threats and controls that do not resolve
    (REQ-SEC-001), views and labeling out of step with the code, a stale data flow, a
    documentation level the risk file contradicts, requirements without their structured fields."""
    from .security.documentation import security_problems
    from .software.documentation import software_problems

    out = [Finding("threat-model", problem, Side("fda_submission/security/", problem.split(":")[0]),
                   Side("requirements.yaml, the risk file, anomalies.yaml, the JUnit report, serve's options",
                        problem.split("(")[-1].rstrip(")") if problem.endswith(")") else "see the message"))
           for problem in security_problems(ctx["security"])] if "security" in ctx else []
    out += [Finding("software-documentation", problem, Side("fda_submission/software/", problem.split(":")[0]),
                    Side("the source, requirements.yaml, the risk file or the profile", "see the message"))
            for problem in software_problems(ctx["software"])] if "software" in ctx else []
    return out


def check_claim(ctx: dict) -> list[Finding]:
    """A regulation or product code that belongs to the other claim; a profile text that says
    what the other claim says."""
    profile = ctx["profile"]
    claim = profile["claim"]
    out = [Finding("claim-pair", f"the profile's {field.replace('_', ' ')} is the other claim's ({other})",
                   Side("profile: claim.type", claim["type"]), Side(f"profile: claim.{field}", value))
           for field, value, other in pair_contradiction(claim)]
    for key in sorted(PROFILE_PROSE):
        text = profile.get(key) if key in profile else (profile.get("owner_text") or {}).get(key)
        for statement in other_claim_statements(claim["type"], text) if isinstance(text, str) else []:
            out.append(Finding("claim-other", f"the profile's {key} says {statement.says}",
                               Side(f"profile: {key}", statement.quote), Side("profile: claim.type", claim["type"])))
    return out


def check_recipe(ctx: dict) -> list[Finding]:
    """Settings of the training configuration that shape the model but that the algorithm
    description does not state (:data:`fda_submission.wording.RECIPE_DESCRIBED`)."""
    missing = wording.recipe_not_described(ctx["config"])
    if not missing:
        return []
    return [Finding("recipe-coverage", "the training configuration has settings the algorithm description does not "
                    "state", Side("model/config.yaml", ", ".join(missing)),
                    Side("algorithm description, section 3", "states " + ", ".join(sorted(wording.RECIPE_DESCRIBED))))]


CHECKS: tuple[Callable[[dict], list[Finding]], ...] = (
    check_identity, check_operating_point, check_evidence, check_population, check_development_images,
    check_plan, check_risks, check_document_date, check_software_and_security, check_claim, check_recipe)
#: Profile texts a reader takes as the manufacturer's statements about the device.
PROFILE_PROSE = MULTILINE | {"user", "readers"}


def check_consistency(ctx: dict[str, Any]) -> list[Finding]:
    """Every finding of every check, in check order."""
    return [finding for check in CHECKS for finding in check(ctx)]


# --- claims -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A phrase that needs evidence, and what (if anything) in the run backs it."""

    code: str
    pattern: re.Pattern
    needs: str
    backed: Callable[[dict], bool]


CLAIMS = (
    Claim("claim-fine-tuned", re.compile(r"\bfine[- ]tun(?:ed|ing)\b", re.IGNORECASE),
          "a model that started from pretrained weights (model/layers.json: weights.source)",
          lambda ctx: ctx["weights"]["pretrained"]),
    Claim("claim-third-expert", re.compile(r"\b(?:checked|verified|reviewed|graded|confirmed|re-?read)\s+by\s+a\s+(?:third|3rd)\s+"
                                       r"(?:expert|reader|radiologist|physician)", re.IGNORECASE),
          "a record that a third reader checked these images (no file of the run records one)",
          lambda ctx: False),
    Claim("claim-locked-before-test", re.compile(r"locked before the (?:internal )?test", re.IGNORECASE),
          "the internal test split scored after the device was locked (evaluate scores both in one step)",
          lambda ctx: False),
    Claim("claim-every-number", re.compile(r"every number[^.]*\b(?:is |are )?(?:read|comes?) (?:only )?from the run",
                                           re.IGNORECASE),
          "no typed value in the documents (profile values exist and are marked)", lambda ctx: False),
    Claim("claim-clearance", re.compile(r"\bFDA[- ](?:cleared|approved|clearance granted)\b", re.IGNORECASE),
          "a clearance decision (no file of the run can hold one)", lambda ctx: False),
    Claim("claim-never-seen", re.compile(r"\b(?:internal|test split|validation split)\b[^.\n]{0,100}?\b(?:never (?:been )?"
                                         r"seen|unseen|never saw)\b|\b(?:never (?:been )?seen|unseen|never saw)\b[^.\n]{0,100}?"
                                         r"\b(?:internal|test split|validation split)\b", re.IGNORECASE),
          "data from outside the training source: an internal split is drawn from the same folder as the training "
          "images (an external set scored by cxr-device assess)", lambda ctx: False),
    Claim("claim-site-dicom", re.compile(r"\b(?:real|clinical|hospital|site|sites'|PACS)[- ](?:exported )?DICOMs?\b"
                                         r"(?! (?:export|file)s? (?:of|from) each site)", re.IGNORECASE),
          "an assessment of DICOM files the device did not write (every DICOM assessment of the run holds only its "
          "own synthetic phantoms, or there is none)", lambda ctx: bool(ctx["dicom_evidence"]["site"])),
)
#: Who reads every study, as the documents say it: compared with the profile's ``readers``.
READ_BY = re.compile(r"\b(?:every|each|all)\s+(?:\w+\s+){0,2}(?:study|studies)\b[^.\n]{0,80}?\b(?:read|reported|interpreted)"
                     r"(?:\s+and\s+\w+)?\s+by\s+([^.;\n]{1,120})", re.IGNORECASE)
ROLES = re.compile(r"emergency physicians?|radiologists?|paediatricians?|pediatricians?|radiographers?|"
                   r"technologists?|nurses?|physicians?|clinicians?", re.IGNORECASE)
#: Terms the documents use that must be defined in one of them (term -> how its definition reads).
DEFINED_TERMS = {"collection window": re.compile(r"\*\*the collection window\*\*[^.\n]*\bis\b", re.IGNORECASE)}


def roles(text: str) -> set[str]:
    """The clinical roles a text names (singular, lower case)."""
    return {m.group(0).lower().rstrip("s") for m in ROLES.finditer(text)}


def _sentence(text: str, start: int, end: int) -> str:
    begin = max(text.rfind("\n", 0, start), text.rfind(". ", 0, start)) + 1
    stop = min(i for i in (text.find("\n", end), len(text)) if i >= 0)
    quote = text[begin:stop].strip()
    return quote[:200] + ("..." if len(quote) > 200 else "")


def check_wording(texts: dict[str, str], ctx: dict[str, Any]) -> list[Finding]:
    """The other claim's statements in the documents; who reads every study against the profile's
    readers; terms used but defined in no document."""
    profile = ctx["profile"]
    out = []
    for document, text in texts.items():
        for statement in other_claim_statements(profile["claim"]["type"], text):
            out.append(Finding("claim-other", f"the {document.replace('_', ' ')} says {statement.says}",
                               Side(f"{document}.md", statement.quote), Side("profile: claim.type",
                                                                            profile["claim"]["type"])))
        readers = roles(profile["readers"])
        for match in READ_BY.finditer(text):
            said = roles(match.group(1))
            if said and readers and not readers <= said:
                out.append(Finding("users-readers", f"the {document.replace('_', ' ')} names other readers of every "
                                   "study than the profile", Side(f"{document}.md", _sentence(text, *match.span())),
                                   Side("profile: readers", profile["readers"])))
    for term, definition in DEFINED_TERMS.items():
        used = [name for name, text in texts.items() if term in text.lower()]
        if used and not any(definition.search(text) for text in texts.values()):
            out.append(Finding("undefined-term", f"'{term}' is used but defined in no document",
                               Side(f"{used[0]}.md", f"uses '{term}'"), Side("the package", "no definition")))
    return out


def check_claims(texts: dict[str, str], ctx: dict[str, Any]) -> list[Finding]:
    """Phrases in the rendered documents (name -> Markdown) that the run does not back; one
    finding per claim and document, quoting the sentence; then :func:`check_wording`."""
    out = []
    for claim in CLAIMS:
        if claim.backed(ctx):
            continue
        for document, text in texts.items():
            match = claim.pattern.search(text)
            if match:
                start = max(text.rfind("\n", 0, match.start()), text.rfind(". ", 0, match.start())) + 1
                end = min(i for i in (text.find("\n", match.end()), len(text)) if i >= 0)
                quote = text[start:end].strip()
                out.append(Finding(claim.code, f"the {document.replace('_', ' ')} makes a claim the run does not back",
                                   Side(f"{document}.md", quote[:200] + ("..." if len(quote) > 200 else "")),
                                   Side("the run", f"needs {claim.needs}")))
    return out + check_wording(texts, ctx)
