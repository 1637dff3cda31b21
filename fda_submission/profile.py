"""The device profile: the human-owned words and values of the documents, with defaults (YAML).

Every value is typed: text where the documents print text, lists of text where they print
lists, proportions strictly between 0 and 1 for the acceptance criteria, the power and the
expected prevalence. A value of the wrong type is refused with the file and the key, never
rendered (a string where a list belongs would print letter by letter).

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

from cxr_device.validated import SETTINGS, Fraction, build, check_keys
from cxr_device.yaml_io import load_yaml
from validation.acceptance import Acceptance

from .population import Population

DEFAULT_PROFILE = "device_profile.yaml"
Text = Annotated[str, Field(min_length=1)]
MaybeText = Text | None


class _Section(BaseModel):
    model_config = ConfigDict(**SETTINGS)


class TrainingData(_Section):
    """How the development data relates to what the device reads in use."""

    relation_to_dicom: MaybeText = None  # e.g. the images are JPEG exports of DICOM studies, downscaled by ...


class Study(_Section):
    """Design values of the validation study that are not acceptance criteria."""

    sites: Annotated[int, Field(ge=1, le=100)] = 2
    subgroup_floor: Annotated[int, Field(ge=1, le=10_000)] = 10
    refusal_limit: Fraction = 0.05
    simulation_replicates: Annotated[int, Field(ge=100, le=200_000)] = 2000
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0


class Classification(_Section):
    """Regulatory classification proposed by the documents; the owner confirms it."""

    device_type: Literal["CADt", "CADe", "CADx"] = "CADt"
    regulation: MaybeText = None  # None: 21 CFR 892.2080 for CADt, to be completed otherwise
    product_code: MaybeText = None
    device_class: MaybeText = None
    confirmed: bool = False


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


class DocumentControl(_Section):
    """Identification and approval of every document."""

    id_prefix: MaybeText = None
    revision: MaybeText = None
    date: dt.date | None = None  # None: the date the device was locked (manifest.json, evaluate step)
    author: MaybeText = None
    approvers: list[Approver] = Field(default_factory=list)


class Hazard(_Section):
    """One hazard of the risk file (see fda_submission/risk/default_risks.yaml)."""

    id: Text
    hazard: Text
    cause: Text
    harm: Text
    severity: Annotated[int, Field(ge=1, le=5)]
    probability: Annotated[int, Field(ge=1, le=5)]
    mitigations: list[Text] = Field(min_length=1)
    requirements: list[Text] = Field(min_length=1)
    residual_severity: Annotated[int, Field(ge=1, le=5)]
    residual_probability: Annotated[int, Field(ge=1, le=5)]
    evidence: MaybeText = None  # a run value the documents show beside the hazard (fda_submission/risk.py)


class Risks(_Section):
    """The risk file: the package's defaults or a site's own, and hazards that replace (same id) or add."""

    file: MaybeText = None
    overrides: list[Hazard] = Field(default_factory=list)


class Pccp(_Section):
    """Predetermined change control plan: the changes the manufacturer plans to make."""

    planned_changes: list[Text] | None = None
    retraining_data_policy: MaybeText = None


class Postmarket(_Section):
    """Postmarket monitoring plan values owned by the manufacturer."""

    owner: MaybeText = None
    review_interval_months: Annotated[int, Field(ge=1, le=60)] = 3
    flag_rate_band: Fraction = 0.5  # review when the share flagged moves by more than this fraction of its released value
    complaint_process: MaybeText = None


class OwnerText(_Section):
    """Sections of the package skeletons only the manufacturer can write."""

    clinical_performance: MaybeText = None  # 510(k) summary: clinical performance data, or why none is needed
    equivalence_conclusion: MaybeText = None  # 510(k) summary: the substantial-equivalence conclusion
    installation: MaybeText = None  # labeling: installation and hardware requirements
    pccp_impact_assessment: MaybeText = None  # PCCP: benefits and risks of the planned modifications


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
    intended_use: Text
    clinical_workflow: Text
    user: Text
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


#: Sections merged key by key with the defaults.
SECTIONS = {"acceptance": Acceptance, "population": Population, "training_data": TrainingData, "study": Study,
            "classification": Classification, "predicate": Predicate, "document_control": DocumentControl,
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
        return build(DeviceProfile, str(default_profile_path()), defaults).model_dump()
    given = _read(Path(path))
    merged = {**defaults, **given}
    for name, model in SECTIONS.items():
        if name in given:
            section = check_keys(f"{path}: {name}", given[name], model.model_fields)
            merged[name] = {**(defaults.get(name) or {}), **section}
    profile = _legacy(build(DeviceProfile, str(path), merged).model_dump())
    risk_file = (given.get("risks") or {}).get("file")
    if risk_file and not Path(risk_file).is_absolute():
        profile["risks"]["file"] = str(Path(path).parent / risk_file)
    return profile


def _legacy(profile: dict[str, Any]) -> dict[str, Any]:
    """The earlier top-level comorbidity lists moved into the population (when it has none)."""
    population = profile["population"]
    for old, new in (("include_comorbidities", "comorbidities_include"),
                     ("exclusions_comorbidities", "comorbidities_separate")):
        if profile[old] and not population[new]:
            population[new] = list(profile[old])
    return profile


def _read(path: Path) -> dict[str, Any]:
    """The keys of one profile file (an empty file has none)."""
    return check_keys(str(path), load_yaml(path, "device profile"), DeviceProfile.model_fields)
