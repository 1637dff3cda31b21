"""The software documentation is generated: the architecture from the import graph (a new import
changes the graph and the diagram), the SDS from the runtime's source, the SRS from
requirements.yaml with every requirement's interfaces, the level from the risk file, the
version history from git (and says so without git), the testing summary from a JUnit report,
and the anomalies from the maintained file."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cxr_device.errors import CxrDeviceError
from fda_submission.known_issues import load_anomalies
from fda_submission.profile import load_profile
from fda_submission.risk import load_risks
from fda_submission.software import (
    testing_summary as summaries,  # its functions' names start with test
)
from fda_submission.software.architecture_figure import (
    DATA_FLOW,
    data_flow_problems,
    draw_architecture,
)
from fda_submission.software.history import version_history
from fda_submission.software.import_graph import build_graph, installed_sources
from fda_submission.software.level import BASIC, ENHANCED, documentation_level
from fda_submission.software.practices import development_practices
from fda_submission.software.sds import design_sections
from fda_submission.software.srs import requirement_specs, spec_problems
from fda_submission.trace import load_requirements

pytestmark = pytest.mark.requirement("REQ-SW-001")
REPO = Path(__file__).resolve().parents[1]
ENTRIES = {"predict": "cxr_device.runtime.commands:predict_command",
           "serve": "cxr_device.runtime.commands:serve_command", "assess": "validation.commands:assess_command"}


def _copy_product(tmp_path: Path) -> dict[str, Path]:
    sources = installed_sources(("cxr_device", "validation"))
    out = {}
    for name, folder in sources.items():
        out[name] = Path(shutil.copytree(folder, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")))
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_added_import_changes_the_graph_the_boundary_and_the_diagram(tmp_path):
    sources = _copy_product(tmp_path / "src")
    before = build_graph(sources, ENTRIES)
    first = draw_architecture(before, tmp_path / "a")
    assert _digest(first["svg"]) == _digest(draw_architecture(build_graph(sources, ENTRIES), tmp_path / "b")["svg"])
    edge = {"source": "cxr_device.runtime.report", "target": "cxr_device.synth", "lazy": False}
    assert edge not in before["edges"] and "cxr_device.synth" not in before["runtime"]
    report = sources["cxr_device"] / "runtime" / "report.py"
    report.write_text(report.read_text() + "\nfrom .. import synth  # noqa: F401 - added by the test\n")
    after = build_graph(sources, ENTRIES)
    assert edge in after["edges"] and "cxr_device.synth" in after["runtime"]
    assert after["commands"]["predict"]["modules"] != before["commands"]["predict"]["modules"]
    second = draw_architecture(after, tmp_path / "c")
    assert _digest(second["svg"]) != _digest(first["svg"]) and _digest(second["png"]) != _digest(first["png"])
    assert b"<svg" in second["svg"].read_bytes()[:400]


def test_lazy_imports_count_type_checking_imports_do_not_and_entry_modules_count_by_handler(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "heavy.py").write_text("import numpy\n")
    (package / "light.py").write_text("")
    (package / "other.py").write_text("")
    (package / "cli.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import other\n"
        "def run_command(sub):\n    p = sub.add_parser('run')\n    p.set_defaults(handler=_run)\n"
        "def _run(args):\n    _helper()\n    from . import light\n"
        "def _helper():\n    from . import heavy\n"
        "def _unrelated(args):\n    import pandas\n")
    graph = build_graph({"pkg": package}, {"run": "pkg.cli:run_command"})
    edges = {(e["source"], e["target"], e["lazy"]) for e in graph["edges"]}
    assert ("pkg.cli", "pkg.light", True) in edges and ("pkg.cli", "pkg.heavy", True) in edges
    assert not any(target == "pkg.other" for _, target, _ in edges)
    closure = graph["commands"]["run"]
    assert closure["handler"] == "_run" and set(closure["modules"]) == {"pkg", "pkg.cli", "pkg.light", "pkg.heavy"}
    assert closure["external"] == ["numpy"]  # pandas is imported by a function the command never calls


def test_the_data_flow_names_code_that_exists_and_a_renamed_step_is_reported():
    graph = build_graph()
    assert data_flow_problems(graph) == []
    module = next(m for m in graph["modules"] if m["name"] == DATA_FLOW[5][0])
    module["defines"].remove(DATA_FLOW[5][1])
    assert data_flow_problems(graph) == [f"data flow step 6: {DATA_FLOW[5][0]} defines no {DATA_FLOW[5][1]}"]


def test_the_sds_has_one_section_per_runtime_module_with_its_real_signatures():
    import inspect

    from cxr_device.runtime import signing

    sections = design_sections()
    runtime = installed_sources(("cxr_device",))["cxr_device"] / "runtime"
    assert [s["module"] for s in sections][1:] == sorted(f"cxr_device.runtime.{p.stem}" for p in runtime.glob("*.py")
                                                         if p.stem != "__init__")
    section = next(s for s in sections if s["module"] == "cxr_device.runtime.signing")
    function = next(f for f in section["functions"] if f["name"] == "sign_bundle")
    assert function["signature"].startswith("sign_bundle(") and function["doc"] == inspect.getdoc(signing.sign_bundle)
    assert list(inspect.signature(signing.sign_bundle).parameters) == ["folder", "private_key_path"]
    assert section["doc"] == inspect.getdoc(signing)


def test_the_srs_gives_every_requirement_its_interfaces_and_trace(tmp_path):
    requirements = load_requirements()
    assert spec_problems(requirements) == []
    hazards, _ = load_risks(load_profile())
    rows = [{"id": "REQ-BUNDLE-001", "status": "verified", "grouped": [("test_bundle", "2/2 passed")]}]
    specs = {s["id"]: s for s in requirement_specs(requirements, rows, hazards, [{"id": "CTL-07",
                                                                                 "requirements": ["REQ-BUNDLE-001"]}])}
    bundle = specs["REQ-BUNDLE-001"]
    assert bundle["status"] == "verified" and bundle["tests"] == [("test_bundle", "2/2 passed")]
    assert "HAZ-04" in bundle["hazards"] and bundle["controls"] == ["CTL-07"] and bundle["inputs"] and bundle["errors"]
    assert specs["REQ-COHORT-001"]["status"] is None  # not in the report
    assert spec_problems([{"id": "REQ-X-001", "text": "t", "inputs": ["i"]}]) == ["REQ-X-001: no outputs, errors, limits"]
    path = tmp_path / "requirements.yaml"
    path.write_text("- {id: REQ-X-001, text: t, inputs: just text}\n")
    with pytest.raises(CxrDeviceError, match="requirements.yaml.*item 1"):
        load_requirements(path)


def test_the_documentation_level_follows_the_risk_file_and_the_claim(tmp_path):
    profile = load_profile()
    hazards, _ = load_risks(profile)
    level = documentation_level(profile, hazards)
    assert (level["level"], level["recommended"], level["problems"]) == (BASIC, BASIC, [])
    assert "every study is still read" in level["rationale"] and "TO BE COMPLETED" in level["confirmation"]
    serious = [dict(hazards[0], severity=5)] + hazards[1:]
    level = documentation_level(profile, serious)
    assert level["recommended"] == ENHANCED and level["problems"] and "HAZ-01" in level["problems"][0]
    (tmp_path / "p.yaml").write_text("software: {documentation_level: enhanced}\nclaim: {type: cade}\n")
    assert documentation_level(load_profile(tmp_path / "p.yaml"), serious)["problems"] == []
    (tmp_path / "q.yaml").write_text("claim: {type: cade}\n")
    assert documentation_level(load_profile(tmp_path / "q.yaml"), hazards)["level"] == ENHANCED


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_DATE="2026-01-01T00:00:00Z", GIT_COMMITTER_DATE="2026-01-01T00:00:00Z")
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_version_history_reads_git_up_to_the_tested_commit_and_says_so_without_git(tmp_path):
    repo = tmp_path / "repo"
    (repo / "cxr_device" / "runtime").mkdir(parents=True)
    _git(repo, "init", "-q")
    for name, message in (("cxr_device/runtime/a.py", "runtime before the release"), ("README", "docs"),
                          ("cxr_device/runtime/b.py", "runtime after the release"),
                          ("cxr_device/runtime/c.py", "runtime after the tested commit")):
        (repo / name).write_text(message)
        _git(repo, "add", name)
        _git(repo, "commit", "-q", "-m", message)
        if message == "docs":
            _git(repo, "tag", "v1.0")
        if message == "runtime after the release":
            tested = _git(repo, "rev-parse", "HEAD")
    history = version_history(repo / "cxr_device", {"package_version": "1.1", "git_commit": tested})
    assert history["available"] and history["since"] == "v1.0" and [t["tag"] for t in history["tags"]] == ["v1.0"]
    assert [c["subject"] for c in history["commits"]] == ["runtime after the release"] and history["n_commits"] == 1
    assert history["end"] == tested[:12] and history["end_source"].startswith("the tested commit")
    unknown = version_history(repo / "cxr_device", {"git_commit": "f" * 40})
    assert "is not in this repository" in unknown["end_source"] and unknown["n_commits"] == 2
    outside = tmp_path / "wheel" / "cxr_device"
    outside.mkdir(parents=True)
    missing = version_history(outside, None)
    assert not missing["available"] and "not in a git repository" in missing["reason"] and missing["commits"] == []


def _junit(path: Path, commit: str) -> Path:
    path.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest"><properties>'
        '<property name="cxr-device:package-version" value="0.1.0"/>'
        f'<property name="cxr-device:git-commit" value="{commit}"/><property name="cxr-device:git-dirty" value="no"/>'
        '<property name="cxr-device:library:hypothesis" value="6.1"/></properties>'
        '<testcase classname="tests.test_node" name="a"/><testcase classname="tests.test_node" name="b"><failure/></testcase>'
        '<testcase classname="tests.test_metrics" name="c"/><testcase classname="tests.test_cohort" name="d"><skipped/>'
        '</testcase><testcase classname="tests.test_brand_new" name="e"/></testsuite></testsuites>')
    return path


def test_the_testing_summary_counts_by_level_and_names_the_version_tested(tmp_path):
    report = _junit(tmp_path / "junit.xml", "c0ffee")
    summary = summaries.testing_summary(report, {"package_version": "0.1.0", "git_commit": "c0ffee"})
    assert summary["levels"]["system"] == {"passed": 1, "failed": 1, "skipped": 0, "total": 2}
    assert summary["levels"]["integration"] == {"passed": 0, "failed": 0, "skipped": 1, "total": 1}
    assert summary["levels"]["unit"]["total"] == 2 and summary["unclassified"] == ["test_brand_new"]
    assert summary["total"]["total"] == 5 and summary["same_commit"] is True
    assert summary["tested"]["libraries"] == {"hypothesis": "6.1"}
    assert summaries.testing_summary(report, {"git_commit": "other"})["same_commit"] is False
    assert summaries.level_problems(REPO / "tests") == []
    (tmp_path / "levels.yaml").write_text("system: [test_gone]\n")
    stale = summaries.level_problems(REPO / "tests", tmp_path / "levels.yaml")
    assert stale == [f"test_gone (system) is not a test module of {REPO / 'tests'}"]


def test_the_test_run_records_the_version_it_tests():
    recorded = summaries.tested_environment(REPO)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert recorded["cxr-device:git-commit"] == head
    assert recorded["cxr-device:library:pytest"] == pytest.__version__
    assert set(recorded) >= {"cxr-device:package-version", "cxr-device:tool:storescu", "cxr-device:tool:dciodvfy"}


def test_development_practices_state_what_the_repository_holds():
    practices = development_practices(REPO / "cxr_device", load_profile(), load_requirements())
    assert practices["ci"]["runs"] == ["make test"] and "--junitxml=build/junit.xml" in " ".join(practices["ci"]["make_test"])
    assert practices["reviews"]["records"].startswith("none in this repository beyond the git history")
    assert practices["reviews"]["git"]["commits"] > 0 and practices["configuration"]["n_pins"] > 50
    assert practices["requirements"]["n"] == len(load_requirements()) and practices["tests"]["n_functions"] > 100
    assert "TO BE COMPLETED" in practices["iec62304"]


@pytest.mark.requirement("REQ-SW-002")
def test_anomalies_are_kept_with_impact_rationale_and_cwe_and_a_bad_entry_names_the_file(tmp_path):
    anomalies = load_anomalies()
    assert len(anomalies) >= 10 and len({a["id"] for a in anomalies}) == len(anomalies)
    assert all(a["impact"] and a["rationale"] and a["found_by"] for a in anomalies)
    assert {"CWE-319", "CWE-306", "CWE-1327"} <= {a["cwe"] for a in anomalies}
    assert any("pydicom's UID root" in a["title"] for a in anomalies)
    entry = ("- {id: ANOM-001, title: t, description: d, found_by: f, impact: i, rationale: r, cwe: CWE-abc}\n")
    (tmp_path / "anomalies.yaml").write_text(entry)
    with pytest.raises(CxrDeviceError, match="anomalies.yaml: anomaly ANOM-001.*CWE"):
        load_anomalies(tmp_path / "anomalies.yaml")
    (tmp_path / "anomalies.yaml").write_text(entry.replace("CWE-abc", "CWE-20") * 2)
    with pytest.raises(CxrDeviceError, match="ANOM-001 appears more than once"):
        load_anomalies(tmp_path / "anomalies.yaml")


@pytest.mark.requirement("REQ-SW-001", "REQ-SW-002")
def test_the_software_documentation_document(trained_run, tmp_path):
    from fda_submission.render import prepare, write_package
    from fda_submission.trace import matrix_rows

    report = _junit(tmp_path / "junit.xml", "c0ffee")
    prepared = prepare(trained_run, None, matrix_rows(report), report)
    text = prepared.markdown["software_documentation"]
    for heading in ("## 1. Documentation level", "## 2. Software requirements specification", "## 3. Architecture",
                    "## 4. Software design specification", "## 5. Development practices", "## 6. Version history",
                    "## 7. Unresolved anomalies", "## 8. Testing summary"):
        assert heading in text, heading
    assert "**Basic** (derived from the claim (triage and notification))" in text
    assert "### 4.1 `cxr_device.runtime`" in text and "`cxr_device.runtime.node`" in text
    assert "### ANOM-001:" in text and "**Known issues of this run**" in text and "Calibration" in text
    assert "| system | 1 | 1 | 0 | 2 |" in text and "test_brand_new" in text
    assert "Review records: none in this repository beyond the git history" in text
    fields = [item.field for item in prepared.completeness]
    assert any("software.documentation_level_confirmed" in f for f in fields)
    assert any("software.iec62304" in f for f in fields)
    out = tmp_path / "package"
    write_package(prepared, out, ("md",))
    assert (out / "figures" / "architecture.png").is_file() and (out / "figures" / "architecture.svg").is_file()
    assert "](figures/architecture.png)" in (out / "software_documentation.md").read_text()
