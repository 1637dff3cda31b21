"""The device profile: the human-owned words and values of the documents, with defaults (YAML).

Every value is typed: text where the documents print text, lists of text where they print
lists, proportions strictly between 0 and 1 for the acceptance criteria, the power and the
expected prevalence. A value of the wrong type is refused with the file and the key, never
rendered (a string where a list belongs would print letter by letter).

Text is made safe at load, as header values are (:mod:`cxr_device.safe_text`): control
characters (``ESC[2J``, BEL, NUL ...) become visible escapes such as ``\x1b``, so neither a
terminal (``submission --check``) nor a document ever receives one. The prose keys of
:data:`MULTILINE` keep their line breaks and tabs; in every other value a line break or tab
becomes a space (a name, a number or a list item is printed on one line).

A key whose value is ``null`` is a field a person still has to fill: the documents print a
visible ``[TO BE COMPLETED: ...]`` marker in its place and the completeness report
(``cxr-device submission --check``) lists it. Sections (``population``, ``classification``,
``document_control`` ...) are merged key by key with the defaults, so a profile names only what
it changes.
"""
from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cxr_device.safe_text import one_line, terminal
from cxr_device.validated import SETTINGS, Fraction, build, check_keys
from cxr_device.yaml_io import load_yaml
from validation.acceptance import Acceptance
from validation.margins import Margins
from validation.monitor_limits import Postmarket, RefusalLimit

from .population import Population

DEFAULT_PROFILE = "device_profile.yaml"
Text = Annotated[str, Field(min_length=1)]
MaybeText = Text | None


class _Section(BaseModel):
    model_config = ConfigDict(**SETTINGS)


class TrainingData(_Section):
    """How the development data relates to what the device reads in use."""

    relation_to_dicom: MaybeText = None  # e.g. the images are JPEG exports of DICOM studies, downscaled by ...


class Study(RefusalLimit):
    """Design values of the validation study that are not acceptance criteria (``refusal_limit``,
    which monitoring judges too, is defined with the monitor's limits)."""

    sites: Annotated[int, Field(ge=1, le=100)] = 2
    subgroup_floor: Annotated[int, Field(ge=1, le=10_000)] = 10
    simulation_replicates: Annotated[int, Field(ge=100, le=200_000)] = 2000
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    collection_window_months: Annotated[int, Field(ge=1, le=120)] = 12  # the longest a site collects
    subgroup_margin: Fraction = 0.10  # a level's sensitivity this far below the overall one fails validation


class Claim(_Section):
    """The device's one claim (fda_submission/claims.yaml): CADt (triage and notification, 21 CFR
    892.2080, QFM) or CADe (detection, 21 CFR 892.2070, MYN). Regulation and product code follow
    from the type unless given; a pair of the other claim is a consistency finding."""

    type: Literal["cadt", "cade"] = "cadt"
    regulation: MaybeText = None  # None: the one the claim implies
    product_code: MaybeText = None  # None: the one the claim implies


class Classification(_Section):
    """Device class, proposed by the documents; the owner confirms it. (``device_type``,
    ``regulation`` and ``product_code`` of earlier profiles are read into ``claim``.)"""

    device_class: MaybeText = None
    confirmed: bool = False
    device_type: Literal["CADt", "CADe"] | None = None  # earlier profiles: the claim's type
    regulation: MaybeText = None  # earlier profiles: claim.regulation
    product_code: MaybeText = None  # earlier profiles: claim.product_code


class Predicate(_Section):
    """The predicate device of the 510(k) comparison table (every field filled by the owner)."""

    name: MaybeText = None
    k_number: MaybeText = None
    manufacturer: MaybeText = None
    product_code: MaybeText = None
    intended_use: MaybeText = None
    technology: MaybeText = None
    performance: MaybeText = None


class Approver(_Section):
    name: Text
    role: Text


class Revision(_Section):
    revision: Text
    date: dt.date
    description: Text


class DocumentControl(_Section):
    """Identification and approval of every document."""

    id_prefix: MaybeText = None
    revision: MaybeText = None
    date: dt.date | None = None  # None: the date the device was locked (manifest.json, evaluate step)
    author: MaybeText = None
    approvers: list[Approver] = Field(default_factory=list)
    history: list[Revision] = Field(default_factory=list)  # earlier revisions first; [] : this one, "first issue"


#: Kinds of risk control, in the priority order of ISO 14971 (the risk file's plan names each).
CONTROL_TYPES = ("design", "protective", "information")
#: Run quantities a residual probability can be estimated from (fda_submission/risk.py).
MEASURES = ("false_negatives", "false_positives", "not_scored")


class Control(_Section):
    """One risk control: its kind (inherent safety by design, a protective measure in the device or
    its manufacture, information for safety), what it is, and the requirements implementing it."""

    type: Literal["design", "protective", "information"]
    text: Text
    requirements: list[Text] = Field(min_length=1)


class Estimate(_Section):
    """How the run estimates a hazard's residual probability: P1, the rate of the hazardous
    situation per study (an upper 95% bound from the run, ``measure``), times P2, the probability
    that the hazardous situation leads to harm (``p2``, with its basis)."""

    measure: Literal["false_negatives", "false_positives", "not_scored"]
    p2: Annotated[float, Field(gt=0, le=1)]
    p2_basis: Text


class Hazard(_Section):
    """One hazard of the risk file (see fda_submission/risk/default_risks.yaml), in the terms of
    ISO 14971: the hazard, the foreseeable sequence of events, the hazardous situation it leads to
    and the harm; severity and probability before and after the controls (levels of the risk
    file's plan), the controls in their kinds, and how the run estimates the residual probability."""

    id: Text
    hazard: Text
    sequence: list[Text] = Field(min_length=1)
    hazardous_situation: Text
    harm: Text
    severity: Annotated[int, Field(ge=1, le=5)]
    probability: Annotated[int, Field(ge=1, le=5)]
    probability_basis: Text
    controls: list[Control] = Field(min_length=1)
    residual_severity: Annotated[int, Field(ge=1, le=5)]
    residual_probability: Annotated[int, Field(ge=1, le=5)]
    residual_basis: Text
    estimate: Estimate | None = None
    evidence: MaybeText = None  # a run value the documents show beside the hazard (fda_submission/risk.py)


class Risks(_Section):
    """The risk file: the package's defaults or a site's own, and hazards that replace (same id) or add."""

    file: MaybeText = None
    overrides: list[Hazard] = Field(default_factory=list)


class Pccp(_Section):
    """Predetermined change control plan: the changes the manufacturer plans to make."""

    planned_changes: list[Text] | None = None
    retraining_data_policy: MaybeText = None
    margins: Margins = Field(default_factory=Margins)  # non-inferiority of a modified device (cxr-device compare)


class OwnerText(_Section):
    """Sections of the package skeletons only the manufacturer can write."""

    clinical_performance: MaybeText = None  # 510(k) summary: clinical performance data, or why none is needed
    equivalence_conclusion: MaybeText = None  # 510(k) summary: the substantial-equivalence conclusion
    installation: MaybeText = None  # labeling: installation and hardware requirements
    pccp_impact_assessment: MaybeText = None  # PCCP: benefits and risks of the planned modifications
    risk_policy: MaybeText = None  # RMF: the manufacturer's policy for risk acceptability (procedure, revision)
    risk_plan_approval: MaybeText = None  # RMF: who approved the risk management plan, and when
    clinical_benefit: MaybeText = None  # RMF: the clinical benefit the residual risks are weighed against
    risk_review: MaybeText = None  # RMF: the risk management review before release (who, when, conclusion)
    use_problems_review: MaybeText = None  # HF: the literature and complaint review of similar devices' use problems
    usability_evaluation: MaybeText = None  # HF: the summative evaluation report, or the plan's schedule


class Software(_Section):
    """Software documentation (FDA, device software functions guidance of June 2023)."""

    documentation_level: Literal["basic", "enhanced"] | None = None  # None: basic for CADt, enhanced otherwise
    # the lowest severity of the risk file's 1-5 scale that means death or serious injury: a hazard at or
    # above it before its controls calls for the enhanced level
    serious_injury_severity: Annotated[int, Field(ge=1, le=5)] = 5
    documentation_level_confirmed: bool = False  # true once the owner has confirmed the level
    iec62304: MaybeText = None  # the manufacturer's IEC 62304 declaration (process, software safety class)


class Security(_Section):
    """Cybersecurity: who manages vulnerabilities and the commitments of the management plan."""

    vulnerability_owner: MaybeText = None  # the role or team that runs vulnerability management
    disclosure_contact: MaybeText = None  # where vulnerabilities are reported (e-mail, web form)
    disclosure_policy: MaybeText = None  # the published coordinated-disclosure policy (URL)
    communicate_days: Annotated[int, Field(ge=1, le=365)] = 30  # users told of an uncontrolled risk within
    remediate_days: Annotated[int, Field(ge=1, le=365)] = 60  # a validated fix of an uncontrolled risk within
    routine_update_months: Annotated[int, Field(ge=1, le=60)] | None = None  # cadence of routine updates
    end_of_support: dt.date | None = None  # the day the manufacturer stops supporting this version


class DeviceProfile(BaseModel):
    """Every key of a device profile (the default profile gives each its value)."""

    model_config = ConfigDict(**SETTINGS)
    device_name: Text
    version: Text
    manufacturer: MaybeText
    contact: MaybeText
    claim: Claim
    intended_use: MaybeText  # None: the claim's wording (fda_submission/claims.yaml), filled from this profile
    clinical_workflow: MaybeText  # None: the claim's workflow
    user: Text
    readers: Text  # who reads every study in the standard of care (the workflow and labeling name them)
    false_positive_impact: Text
    false_negative_impact: Text
    population: Population
    training_data: TrainingData
    acceptance: Acceptance
    expected_prevalence: Fraction | None  # None: the prevalence of the run's test split
    power: Fraction
    ground_truth_readers: Annotated[int, Field(ge=1, le=100)]
    reader_study_labels: MaybeText  # NIH radiologist re-reads for the ground-truth section
    study: Study
    classification: Classification
    predicate: Predicate
    document_control: DocumentControl
    risks: Risks
    pccp: Pccp
    postmarket: Postmarket
    owner_text: OwnerText
    software: Software
    security: Security
    # earlier names of the population's comorbidity lists, still read: they fill
    # population.comorbidities_include / comorbidities_separate when those are not given
    include_comorbidities: list[Text] | None = None
    exclusions_comorbidities: list[Text] | None = None


#: Keys whose text is prose: line breaks and tabs are kept (control characters never are).
MULTILINE = frozenset({"intended_use", "clinical_workflow", "false_positive_impact", "false_negative_impact",
                       "relation_to_dicom", "technology", "performance", "retraining_data_policy",
                       "complaint_process", "clinical_performance", "equivalence_conclusion", "installation",
                       "pccp_impact_assessment", "risk_policy", "risk_plan_approval", "clinical_benefit",
                       "risk_review", "use_problems_review", "usability_evaluation"})

#: Sections merged key by key with the defaults.
SECTIONS = {"acceptance": Acceptance, "population": Population, "training_data": TrainingData, "study": Study,
            "claim": Claim, "classification": Classification, "predicate": Predicate, "document_control": DocumentControl,
            "risks": Risks, "pccp": Pccp, "postmarket": Postmarket, "owner_text": OwnerText, "software": Software,
            "security": Security}


def default_profile_path() -> Path:
    """The profile shipped with the package: the default of every key."""
    return Path(str(resources.files("fda_submission") / "profiles" / DEFAULT_PROFILE))


def load_profile(path: str | Path | None = None) -> dict[str, Any]:
    """The default profile, updated with the keys of ``path`` and validated; unknown keys are
    errors naming the file and the key. A relative ``risks.file`` is resolved against the
    profile's folder."""
    defaults = _read(default_profile_path())
    if path is None:
        return safe_text(build(DeviceProfile, str(default_profile_path()), defaults).model_dump())
    given = _read(Path(path))
    merged = {**defaults, **given}
    for name, model in SECTIONS.items():
        if name in given:
            section = check_keys(f"{path}: {name}", given[name], model.model_fields)
            merged[name] = {**(defaults.get(name) or {}), **section}
    profile = safe_text(_legacy(build(DeviceProfile, str(path), merged).model_dump()))
    risk_file = profile["risks"]["file"] if (given.get("risks") or {}).get("file") else None
    if risk_file and not Path(risk_file).is_absolute():
        profile["risks"]["file"] = one_line(Path(path).parent / risk_file)
    return profile


def safe_text(value: Any, key: str = "") -> Any:
    """``value`` (a profile, a section, a list or a scalar) with every string made safe to print:
    control characters escaped; line breaks and tabs kept only under a :data:`MULTILINE` key."""
    if isinstance(value, dict):
        return {k: safe_text(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_text(v, key) for v in value]
    if isinstance(value, str):
        return terminal(value, multiline=True) if key in MULTILINE else one_line(value)
    return value


def _legacy(profile: dict[str, Any]) -> dict[str, Any]:
    """Earlier keys read into their place: the comorbidity lists into the population (when it has
    none), classification.device_type / regulation / product_code into the claim."""
    classification, claim = profile["classification"], profile["claim"]
    if classification.get("device_type"):
        claim["type"] = classification["device_type"].lower()
    for key in ("regulation", "product_code"):
        if classification.get(key) and not claim[key]:
            claim[key] = classification[key]
    population = profile["population"]
    for old, new in (("include_comorbidities", "comorbidities_include"),
                     ("exclusions_comorbidities", "comorbidities_separate")):
        if profile[old] and not population[new]:
            population[new] = list(profile[old])
    return profile


def _read(path: Path) -> dict[str, Any]:
    """The keys of one profile file (an empty file has none)."""
    return check_keys(str(path), load_yaml(path, "device profile"), DeviceProfile.model_fields)
