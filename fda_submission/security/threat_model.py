"""The threat model: threats over the real interfaces, their controls, the requirements that
implement the controls and the tests that verify them (``threats.yaml``).

Controls resolve exactly as the risk file's do (:func:`fda_submission.risk.unresolved_requirements`
and :func:`fda_submission.risk.verification`): a control naming an unknown requirement, or (with
a JUnit report) one without a passing test, does not resolve. :func:`threat_problems` lists every
such control and every threat that names an unknown control, hazard or anomaly, has an invalid
CVSS vector, or has no software control without an anomaly that accepts it; the consistency check
reports them (code ``threat-model``).

Each threat's score is the CVSS v3.1 base score of its vector (:mod:`.cvss`), computed here.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import SETTINGS, build
from cxr_device.yaml_io import load_yaml

from ..risk import unresolved_requirements, verification
from . import cvss

THREATS_FILE = "threats.yaml"
_Text = Annotated[str, Field(min_length=1)]


class Control(BaseModel):
    model_config = ConfigDict(**SETTINGS)
    id: Annotated[str, Field(pattern=r"^CTL-\d{2,3}$")]
    text: _Text
    requirements: list[_Text] = Field(min_length=1)


class Threat(BaseModel):
    model_config = ConfigDict(**SETTINGS)
    id: Annotated[str, Field(pattern=r"^THR-\d{2,3}$")]
    interface: _Text
    asset: _Text
    stride: _Text
    threat: _Text
    vector: _Text
    vector_rationale: _Text
    hazards: list[_Text] = Field(min_length=1)
    controls: list[_Text] = Field(default_factory=list)
    site_controls: list[_Text] = Field(default_factory=list)
    anomalies: list[_Text] = Field(default_factory=list)

    @field_validator("vector")
    @classmethod
    def _vector(cls, value: str) -> str:
        cvss.parse(value)
        return value


class ThreatModel(BaseModel):
    model_config = ConfigDict(**SETTINGS)
    controls: list[Control] = Field(min_length=1)
    threats: list[Threat] = Field(min_length=1)


def threats_path() -> Path:
    return Path(str(resources.files("fda_submission") / "security" / THREATS_FILE))


def load_threat_model(path: str | Path | None = None) -> dict:
    """The threat model file, validated (errors name the file and the entry), ids unique:
    ``{"controls": [...], "threats": [...]}``."""
    path = Path(path) if path else threats_path()
    model = build(ThreatModel, str(path), load_yaml(path, "threat model")).model_dump()
    for kind in ("controls", "threats"):
        ids = [item["id"] for item in model[kind]]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise CxrDeviceError(f"{path}: {kind} id(s) {', '.join(duplicated)} appear more than once")
    return model


@dataclass(frozen=True)
class ThreatProblem:
    """A threat or control that does not resolve."""

    item: str  # THR-.. or CTL-..
    problem: str
    found: str

    def line(self) -> str:
        return f"{self.item}: {self.problem} ({self.found})"


def threat_problems(model: dict, requirement_ids: set[str], trace_rows: list[dict] | None,
                    hazard_ids: set[str], anomaly_ids: set[str]) -> list[ThreatProblem]:
    """Every control that does not resolve to a (verified) requirement, and every threat naming an
    unknown control, hazard or anomaly, or with neither a control nor an accepting anomaly."""
    out = []
    controls = {c["id"] for c in model["controls"]}
    for c in model["controls"]:
        out += [ThreatProblem(c["id"], problem, found)
                for _, problem, found in unresolved_requirements(c["requirements"], requirement_ids, trace_rows)]
    used = {cid for t in model["threats"] for cid in t["controls"]}
    out += [ThreatProblem(cid, "the control is not used by any threat", "threats.yaml") for cid in sorted(controls - used)]
    for t in model["threats"]:
        out += [ThreatProblem(t["id"], f"{cid} is not a control of the threat model", "no such control")
                for cid in t["controls"] if cid not in controls]
        out += [ThreatProblem(t["id"], f"{hid} is not a hazard of the risk file", "no such hazard")
                for hid in t["hazards"] if hid not in hazard_ids]
        out += [ThreatProblem(t["id"], f"{aid} is not an anomaly of anomalies.yaml", "no such anomaly")
                for aid in t["anomalies"] if aid not in anomaly_ids]
        if not t["controls"] and not t["anomalies"]:
            out.append(ThreatProblem(t["id"], "the threat has no software control and no anomaly that accepts it",
                                     "no control"))
    return out


def threat_rows(model: dict, trace_rows: list[dict] | None) -> dict:
    """The threat model as the document prints it: ``{"threats", "controls", "by_severity"}``;
    each threat with its computed score and its controls, each control with its requirements'
    status and tests (None and [] without a JUnit report)."""
    controls = {c["id"]: {**c, "verification": verification(c["requirements"], trace_rows),
                          "threats": [t["id"] for t in model["threats"] if c["id"] in t["controls"]]}
                for c in model["controls"]}
    threats = []
    for t in model["threats"]:
        threats.append({**t, "score": cvss.scores(t["vector"]),
                        "control_rows": [controls[c] for c in t["controls"] if c in controls]})
    order = [label for _, label in reversed(cvss.SEVERITIES)]
    by_severity = {label: [t["id"] for t in threats if t["score"]["severity"] == label] for label in order}
    return {"threats": threats, "controls": list(controls.values()),
            "by_severity": {k: v for k, v in by_severity.items() if v}}
