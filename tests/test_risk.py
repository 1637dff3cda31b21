"""The risk file: the plan's scales and matrix are complete and well formed; every control of the
default hazards resolves to a requirement of requirements.yaml and to a test marked with it; the
hazards the device has now are in it with the controls that really control them; a dangling
control, a control without a passing test, an unacceptable residual risk and a residual
probability the run contradicts are reported (and `submission --check` prints them); a site's file
and overrides come through the profile; a malformed hazard or plan names the file and the field."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cxr_device.cli import main
from cxr_device.errors import CxrDeviceError
from fda_submission.profile import CONTROL_TYPES, load_profile
from fda_submission.risk import (
    ACCEPTABLE,
    ALARP,
    INTERNAL,
    REGIONS,
    STANDALONE,
    UNACCEPTABLE,
    benefit_risk,
    default_plan,
    default_risk_path,
    estimate_residuals,
    load_risk_file,
    load_risks,
    measured_rates,
    ordered_controls,
    probability_level,
    rating_problems,
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


def _hazard(hid="HAZ-99", requirements=("REQ-DOC-001",), **change) -> dict:
    """A hazard of the file's shape (what a site writes)."""
    hazard = {"id": hid, "hazard": "h", "sequence": ["e1", "e2"], "hazardous_situation": "hs", "harm": "x",
              "severity": 3, "probability": 2, "probability_basis": "b",
              "controls": [{"type": "design", "text": "c", "requirements": list(requirements)}],
              "residual_severity": 3, "residual_probability": 1, "residual_basis": "rb"}
    hazard.update(change)
    return hazard


# --- the plan --------------------------------------------------------------------------------------
def test_the_plan_defines_every_level_in_words_and_probability_as_contiguous_frequency_ranges():
    plan = load_risk_file(load_profile()).plan
    severity, levels = plan["severity"], plan["probability"]["levels"]
    assert [s["level"] for s in severity] == [1, 2, 3, 4, 5] and all(s["name"] and s["definition"] for s in severity)
    assert [p["level"] for p in levels] == [1, 2, 3, 4, 5] and all(p["name"] and p["definition"] for p in levels)
    assert levels[0]["at_least"] == 0 and levels[-1]["below"] == 1
    assert all(a["below"] == b["at_least"] for a, b in zip(levels, levels[1:]))  # no gap, no overlap
    assert all(p["at_least"] < p["below"] for p in levels) and plan["probability"]["unit"]
    assert [probability_level(p, plan)["level"] for p in (0, 5e-7, 1e-6, 5e-4, 0.02, 1.0)] == [1, 1, 2, 3, 5, 5]
    matrix = plan["acceptability"]["matrix"]
    assert len(matrix) == len(severity) and all(len(row) == len(levels) for row in matrix)
    assert {r["name"] for r in plan["acceptability"]["regions"]} == set(REGIONS)
    assert all(r["definition"] for r in plan["acceptability"]["regions"])
    # the matrix gets no better with severity or probability
    order = {name: i for i, name in enumerate(REGIONS)}
    for s in range(len(matrix)):
        for p in range(len(levels)):
            if s + 1 < len(matrix):
                assert order[matrix[s + 1][p]] >= order[matrix[s][p]]
            if p + 1 < len(levels):
                assert order[matrix[s][p + 1]] >= order[matrix[s][p]]
    assert risk_level(1, 1, plan) == ACCEPTABLE and risk_level(4, 3, plan) == ALARP
    assert risk_level(5, 3, plan) == UNACCEPTABLE
    assert tuple(c["type"] for c in plan["control_types"]) == CONTROL_TYPES == ("design", "protective", "information")


@pytest.mark.parametrize("break_it, words", [
    (lambda plan: plan["probability"]["levels"][2].update(at_least=2e-4), "level 3 must start where level 2 ends"),
    (lambda plan: plan["probability"]["levels"][-1].update(below=0.5), "must start at 0 and end at 1"),
    (lambda plan: plan["acceptability"]["matrix"][0].pop(), "one row per severity level"),
    (lambda plan: plan["acceptability"]["matrix"][1].__setitem__(0, "tolerable"), "every cell is one of"),
    (lambda plan: plan["control_types"].reverse(), "in this order"),
    (lambda plan: plan["severity"][1].pop("definition"), "definition: Field required"),
])
def test_a_plan_that_is_not_well_formed_is_refused_naming_the_file(tmp_path, break_it, words):
    data = yaml.safe_load(default_risk_path().read_text())
    break_it(data["plan"])
    (tmp_path / "risks.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "profile.yaml").write_text("risks: {file: risks.yaml}\n")
    with pytest.raises(CxrDeviceError, match=re.escape(str(tmp_path / "risks.yaml")) + ".*" + re.escape(words)):
        load_risk_file(load_profile(tmp_path / "profile.yaml"))


# --- controls --------------------------------------------------------------------------------------
def test_every_default_control_resolves_to_a_requirement_and_a_test():
    hazards, source = load_risks(load_profile())
    requirements = {r["id"] for r in load_requirements()}
    marked = marked_requirements()
    assert source.endswith("default_risks.yaml") and len(hazards) >= 18
    assert verify_risks(hazards, requirements, None) == []
    for hazard in hazards:
        assert hazard["sequence"] and hazard["hazardous_situation"] and hazard["harm"]
        for control in hazard["controls"]:
            assert control["requirements"], f"{hazard['id']}: a control without a requirement"
            for rid in control["requirements"]:
                assert rid in requirements, f"{hazard['id']}: {rid} is not in requirements.yaml"
                assert marked.get(rid), f"{hazard['id']}: no test is marked @pytest.mark.requirement({rid!r})"
        assert hazard["residual_severity"] * hazard["residual_probability"] <= \
            hazard["severity"] * hazard["probability"]


# hazard id -> (words of the hazard, requirements its controls must name: the ones whose tests control it)
NEW_HAZARDS = {
    "HAZ-13": ("wrong patient or study", {"REQ-NODE-003", "REQ-NODE-004", "REQ-NODE-008"}),
    "HAZ-14": ("TLS or AE-title misconfiguration", {"REQ-NODE-005", "REQ-NODE-006"}),
    "HAZ-04": ("unsigned", {"REQ-BUNDLE-001", "REQ-BUNDLE-002"}),
    "HAZ-15": ("stops without anyone noticing", {"REQ-NODE-001", "REQ-NODE-002", "REQ-NODE-005"}),
    "HAZ-16": ("Calibration drift at another prevalence", {"REQ-ASSESS-001", "REQ-DOC-003"}),
    "HAZ-17": ("population shift", {"REQ-INPUT-003", "REQ-DOC-003"}),
    "HAZ-18": ("did not read", {"REQ-PRED-001", "REQ-NODE-001"}),
}


@pytest.mark.parametrize("hid", sorted(NEW_HAZARDS))
def test_the_hazards_the_device_has_now_are_in_the_file_with_the_controls_that_control_them(hid):
    hazards = {h["id"]: h for h in load_risks(load_profile())[0]}
    words, needed = NEW_HAZARDS[hid]
    hazard = hazards[hid]
    assert words.lower() in hazard["hazard"].lower()
    assert needed <= set(hazard["requirements"]), f"{hid}: {sorted(needed - set(hazard['requirements']))}"
    assert len(hazard["sequence"]) >= 2  # a sequence of events, not a cause
    requirements = {r["id"] for r in load_requirements()}
    rows = [{"id": rid, "status": "verified", "grouped": []} for rid in requirements]
    assert [p for p in verify_risks([hazard], requirements, rows) if p.requirement] == []


def test_controls_are_listed_in_the_priority_order_of_iso_14971():
    controls = [{"type": "information", "text": "i"}, {"type": "design", "text": "d1"},
                {"type": "protective", "text": "p"}, {"type": "design", "text": "d2"}]
    assert [c["text"] for c in ordered_controls(controls)] == ["d1", "d2", "p", "i"]
    for hazard in load_risks(load_profile())[0]:  # the default file lists them so already
        kinds = [CONTROL_TYPES.index(c["type"]) for c in hazard["controls"]]
        assert kinds == sorted(kinds), hazard["id"]


def test_a_dangling_control_is_reported(tmp_path):
    profile_path = tmp_path / "profile.yaml"
    profile_path.write_text(yaml.safe_dump({"risks": {"overrides": [_hazard(requirements=["REQ-NOPE-001"])]}}))
    hazards, _ = load_risks(load_profile(profile_path))
    problems = verify_risks(hazards, {r["id"] for r in load_requirements()}, None)
    assert [(p.hazard, p.requirement, p.found, p.control) for p in problems] == \
        [("HAZ-99", "REQ-NOPE-001", "no such requirement", "c")]


def test_a_control_without_a_passing_test_is_reported_when_a_junit_report_is_given():
    hazards, _ = load_risks(load_profile())
    requirements = {r["id"] for r in load_requirements()}
    rows = [{"id": rid, "status": "verified", "grouped": []} for rid in requirements]
    assert verify_risks(hazards, requirements, rows) == []
    rows = [dict(r, status="failed") if r["id"] == "REQ-NODE-003" else r for r in rows]
    problems = verify_risks(hazards, requirements, rows)
    assert {p.hazard for p in problems} == {h["id"] for h in hazards if "REQ-NODE-003" in h["requirements"]} \
        == {"HAZ-13"}
    assert all(p.found == "failed" and p.requirement == "REQ-NODE-003" and p.control for p in problems)
    rows = [r for r in rows if r["id"] != "REQ-NODE-003"]  # no test of it in the report at all
    assert {p.found for p in verify_risks(hazards, requirements, rows)} == {"not in the report"}


def test_residual_risks_are_checked():
    hazard = _hazard("H", severity=2, probability=2, residual_severity=5, residual_probability=4)
    problems = verify_risks([hazard], {"REQ-DOC-001"}, None)
    assert [p.problem for p in problems] == ["residual risk is higher than the risk before the controls",
                                             "residual risk is unacceptable"]


def test_a_site_risk_file_replaces_the_default_and_errors_name_the_file(tmp_path):
    (tmp_path / "risks.yaml").write_text(yaml.safe_dump([_hazard("S-1")]))  # a list of hazards keeps the plan
    (tmp_path / "profile.yaml").write_text("risks: {file: risks.yaml}\n")
    risk_file = load_risk_file(load_profile(tmp_path / "profile.yaml"))
    assert [h["id"] for h in risk_file.hazards] == ["S-1"] and risk_file.path == str(tmp_path / "risks.yaml")
    assert risk_file.plan == default_plan() and risk_file.hazards[0]["requirements"] == ["REQ-DOC-001"]
    (tmp_path / "risks.yaml").write_text(yaml.safe_dump([_hazard("S-1", severity=9)]))
    with pytest.raises(CxrDeviceError, match=r"risks.yaml: hazard S-1: severity: Input should be less than or equal"):
        load_risks(load_profile(tmp_path / "profile.yaml"))
    (tmp_path / "risks.yaml").write_text(yaml.safe_dump([{**_hazard("S-1"), "mitigations": ["m"]}]))
    with pytest.raises(CxrDeviceError, match=r"risks.yaml: hazard S-1: .*mitigations"):
        load_risks(load_profile(tmp_path / "profile.yaml"))
    bad_control = _hazard("S-1", controls=[{"type": "training", "text": "t", "requirements": ["REQ-DOC-001"]}])
    (tmp_path / "risks.yaml").write_text(yaml.safe_dump([bad_control]))
    with pytest.raises(CxrDeviceError, match=r"risks.yaml: hazard S-1: controls.0.type"):
        load_risks(load_profile(tmp_path / "profile.yaml"))


# --- residual probabilities from the run ----------------------------------------------------------------
def _metrics(tp, fn, fp, tn) -> dict:
    return {"splits": {"test": {"confusion": {"tp": tp, "fn": fn, "fp": fp, "tn": tn}}}}


def _assessment(name, tp, fn, fp, tn, not_scored=0, in_population=True) -> dict:
    return {"name": name, "file": f"assessment/{name}/assessment.json", "in_population": in_population,
            "accepted": {"confusion": {"tp": tp, "fn": fn, "fp": fp, "tn": tn}},
            "scoring": {"n_accepted": tp + fn + fp + tn, "n_not_scored": not_scored}}


@pytest.mark.requirement("REQ-RISK-002")
def test_rates_come_from_the_intended_populations_standalone_assessment_else_the_internal_split():
    from validation.intervals import clopper_pearson

    internal = measured_rates(_metrics(8, 3, 2, 34), [], 0.2)
    fn = internal["false_negatives"]
    assert (fn["basis"], fn["k"], fn["n"]) == (INTERNAL, 3, 11)
    assert fn["upper"] == pytest.approx(clopper_pearson(3, 11)[1]) and fn["p1"] == pytest.approx(fn["upper"] * 0.2)
    assert internal["false_positives"]["p1"] == pytest.approx(clopper_pearson(2, 36)[1] * 0.8)
    assert "unavailable" in internal["not_scored"]  # the development images never met the input rules
    assessments = [_assessment("site_a", 190, 10, 30, 270, not_scored=12),
                   _assessment("site_b", 95, 5, 10, 390, not_scored=40),
                   _assessment("children", 10, 20, 5, 5, in_population=False)]  # not the intended population
    rates = measured_rates(_metrics(8, 3, 2, 34), assessments, 0.2)
    fn, refused = rates["false_negatives"], rates["not_scored"]
    assert (fn["basis"], fn["set"]) == (STANDALONE, "site_b")  # the higher bound of the two in the population
    assert fn["upper"] == pytest.approx(clopper_pearson(5, 100)[1])
    assert (refused["set"], refused["k"], refused["n"]) == ("site_b", 40, 540)


@pytest.mark.requirement("REQ-RISK-002")
def test_a_residual_probability_the_run_contradicts_is_reported_and_one_it_supports_is_not():
    plan = default_plan()
    hazard = _hazard("HAZ-01", severity=4, probability=4, residual_severity=4, residual_probability=3,
                     estimate={"measure": "false_negatives", "p2": 0.02, "p2_basis": "b"})
    weak = measured_rates(_metrics(8, 3, 2, 34), [], 0.2)  # 3 of 11 missed: P1 <= 0.12, P = 0.0024: probable
    estimate = estimate_residuals([hazard], plan, weak)["HAZ-01"]
    assert estimate["p"] == pytest.approx(weak["false_negatives"]["p1"] * 0.02)
    assert (estimate["level"]["level"], estimate["stated"]["level"], estimate["contradicted"]) == (4, 3, True)
    [problem] = rating_problems({"HAZ-01": estimate})
    assert problem.stated == "residual probability level 3 (occasional)"
    assert problem.computed.startswith("level 4 (probable)") and "3 of 11" in problem.computed
    strong = measured_rates(_metrics(8, 3, 2, 34), [_assessment("site_a", 490, 10, 30, 470)], 0.2)
    supported = estimate_residuals([hazard], plan, strong)["HAZ-01"]
    assert supported["level"]["level"] <= 3 and not supported["contradicted"]
    assert rating_problems({"HAZ-01": supported}) == []
    unmeasured = estimate_residuals([{**hazard, "estimate": {"measure": "not_scored", "p2": 0.02, "p2_basis": "b"}}],
                                    plan, weak)["HAZ-01"]
    assert unmeasured["unavailable"] and not unmeasured["contradicted"]


def test_the_overall_residual_risk_follows_the_residual_risks():
    plan = default_plan()
    alarp = _hazard("A", severity=4, probability=4, residual_severity=4, residual_probability=3)
    fine = _hazard("B")
    assert benefit_risk([alarp, fine], plan, {}, [], verified=True)["verdict"] == "benefit"
    assert benefit_risk([fine], plan, {}, [], verified=True)["verdict"] == "acceptable"
    assert benefit_risk([fine], plan, {}, [], verified=False)["verdict"] == "open"  # controls not shown verified
    measured = {"A": {"level": {"level": 4, "name": "probable"}}}  # the run puts A into the unacceptable region
    overall = benefit_risk([alarp, fine], plan, measured, [], verified=True)
    assert overall["verdict"] == "unacceptable" and overall["regions"][UNACCEPTABLE] == ["A"]
    assert overall["residual"]["A"] == {"severity": 4, "probability": 4, "region": UNACCEPTABLE, "from_run": True}


# --- through the consistency check and the command ---------------------------------------------------
@pytest.fixture
def run(trained_run, tmp_path):
    copy = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = copy / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(copy / "cohort")
    summary_path.write_text(json.dumps(summary))
    return copy


def _junit(path: Path, failed: set[str] = frozenset()) -> Path:
    """A JUnit report with one test per requirement of requirements.yaml, passing unless in ``failed``."""
    failure = '<failure message="x"/>'
    cases = "".join(f'<testcase classname="tests.t" name="test_{r["id"]}"><properties><property name="requirement" '
                    f'value="{r["id"]}"/></properties>{failure if r["id"] in failed else ""}'
                    "</testcase>" for r in load_requirements())
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="s">{cases}</testsuite></testsuites>')
    return path


@pytest.mark.requirement("REQ-RISK-002", "REQ-DOC-003")
def test_check_reports_a_contradicted_rating_and_an_unverified_control_and_only_owner_fields(run, tmp_path, capsys):
    junit = _junit(tmp_path / "junit.xml", failed={"REQ-NODE-006"})
    assert main(["submission", "--run", str(run), "--check", "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    # the small internal test split cannot support the stated residual probability of a false negative
    assert "[risk-rating] hazard HAZ-01: the run gives a higher residual probability than the risk file states" in out
    assert "residual_probability: residual probability level 3 (occasional)" in out
    assert "[risk-control] hazard HAZ-14: REQ-NODE-006 is failed in the JUnit report" in out
    # a profile whose P2 the run supports, and every requirement verified: no risk finding, only owner fields
    overrides = [h for h in load_risks(load_profile())[0] if h.get("estimate")]
    for h in overrides:
        h["estimate"]["p2"] = 1e-6
        h.pop("requirements")
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"risks": {"overrides": overrides}}))
    main(["submission", "--run", str(run), "--check", "--junit", str(_junit(tmp_path / "ok.xml")), "--profile",
          str(profile)])
    out = capsys.readouterr().out
    assert "[risk-" not in out and "[usability-" not in out
    from fda_submission.render import prepare
    from fda_submission.trace import matrix_rows

    prepared = prepare(run, profile, matrix_rows(tmp_path / "ok.xml"), tmp_path / "ok.xml")
    ours = [i.field for i in prepared.completeness if {"risk_management", "usability"} & set(i.documents)]
    assert ours and all(re.search(r"\(profile: [a-z_.]+\)$", field) for field in ours), ours
    assert not [u for u in prepared.untraced if u["document"] in ("risk_management", "usability")]
    rmf = prepared.markdown["risk_management"]
    assert "**No residual risk is unacceptable, and every control is verified.**" in rmf
    assert "**Clinical benefit.** [TBC: the clinical benefit the residual risks are weighed against" in rmf
