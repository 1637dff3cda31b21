"""The risk file: every control of the default hazards resolves to a requirement of
requirements.yaml and to a test marked with it; a dangling control (unknown requirement, or one
without a passing test in the JUnit report) is reported and blocks rendering; a site's file and
overrides come through the profile; a malformed hazard names the file and the field."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxr_device.errors import CxrDeviceError
from fda_submission.profile import load_profile
from fda_submission.risk import (
    ALARP,
    UNACCEPTABLE,
    load_risks,
    risk_level,
    verify_risks,
)
from fda_submission.trace import load_requirements

pytestmark = pytest.mark.requirement("REQ-RISK-001")

TESTS = Path(__file__).resolve().parent
MARKER = re.compile(r"requirement\(([^)]*)\)")


def marked_requirements() -> dict[str, list[str]]:
    """requirement id -> test files marking it (decorators and module-level pytestmark)."""
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for args in MARKER.findall(path.read_text()):
            for rid in re.findall(r"REQ-[A-Z]+-\d+", args):
                found.setdefault(rid, []).append(path.name)
    return found


def test_every_default_control_resolves_to_a_requirement_and_a_test():
    hazards, source = load_risks(load_profile())
    requirements = {r["id"] for r in load_requirements()}
    marked = marked_requirements()
    assert source.endswith("default_risks.yaml") and len(hazards) >= 10
    assert verify_risks(hazards, requirements, None) == []
    for hazard in hazards:
        for rid in hazard["requirements"]:
            assert rid in requirements, f"{hazard['id']}: {rid} is not in requirements.yaml"
            assert marked.get(rid), f"{hazard['id']}: no test is marked @pytest.mark.requirement({rid!r})"
        assert hazard["residual_severity"] * hazard["residual_probability"] <= \
            hazard["severity"] * hazard["probability"]


def test_a_dangling_control_is_reported(tmp_path):
    profile_path = tmp_path / "profile.yaml"
    profile_path.write_text("risks:\n  overrides:\n    - {id: HAZ-99, hazard: h, cause: c, harm: x, severity: 3, "
                            "probability: 2, mitigations: [m], requirements: [REQ-NOPE-001], residual_severity: 3, "
                            "residual_probability: 1}\n")
    hazards, _ = load_risks(load_profile(profile_path))
    problems = verify_risks(hazards, {r["id"] for r in load_requirements()}, None)
    assert [(p.hazard, p.requirement, p.found) for p in problems] == [("HAZ-99", "REQ-NOPE-001", "no such requirement")]


def test_a_control_without_a_passing_test_is_reported_when_a_junit_report_is_given():
    hazards, _ = load_risks(load_profile())
    requirements = {r["id"] for r in load_requirements()}
    rows = [{"id": rid, "status": "verified", "grouped": []} for rid in requirements]
    assert verify_risks(hazards, requirements, rows) == []
    rows = [dict(r, status="failed") if r["id"] == "REQ-BUNDLE-001" else r for r in rows]
    problems = verify_risks(hazards, requirements, rows)
    assert {p.hazard for p in problems} == {"HAZ-01", "HAZ-04"} and all(p.found == "failed" for p in problems)


def test_residual_risks_are_checked():
    hazard = {"id": "H", "requirements": ["REQ-DOC-001"], "severity": 2, "probability": 2,
              "residual_severity": 5, "residual_probability": 4}
    problems = verify_risks([hazard], {"REQ-DOC-001"}, None)
    assert [p.problem for p in problems] == ["residual risk is higher than the risk before the controls",
                                             "residual risk is unacceptable"]
    assert risk_level(4, 3) == ALARP and risk_level(5, 3) == UNACCEPTABLE


def test_a_site_risk_file_replaces_the_default_and_errors_name_the_file(tmp_path):
    (tmp_path / "risks.yaml").write_text("- {id: S-1, hazard: h, cause: c, harm: x, severity: 2, probability: 2, "
                                         "mitigations: [m], requirements: [REQ-DOC-001], residual_severity: 2, "
                                         "residual_probability: 1}\n")
    (tmp_path / "profile.yaml").write_text("risks: {file: risks.yaml}\n")
    hazards, source = load_risks(load_profile(tmp_path / "profile.yaml"))
    assert [h["id"] for h in hazards] == ["S-1"] and source == str(tmp_path / "risks.yaml")
    (tmp_path / "risks.yaml").write_text("- {id: S-1, hazard: h, cause: c, harm: x, severity: 9, probability: 2, "
                                         "mitigations: [m], requirements: [REQ-DOC-001], residual_severity: 2, "
                                         "residual_probability: 1}\n")
    with pytest.raises(CxrDeviceError, match=r"risks.yaml: hazard S-1: severity: Input should be less than or equal"):
        load_risks(load_profile(tmp_path / "profile.yaml"))
