"""The CycloneDX SBOM of a locked bundle (`cxr-device sbom`): valid against the schema (the
library's validator), every runtime distribution with its version and licence, distribution-
constraining licences flagged, nothing of the documentation tools, deterministic. That its
components are exactly what predict, serve and assess load is tests/test_security.py's."""
from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from cxr_device.cli import main
from fda_submission.sbom import (
    licence_constraint,
    norm,
    runtime_distributions,
    sbom_for_bundle,
    validation_errors,
)

pytestmark = pytest.mark.requirement("REQ-SBOM-001")

@pytest.fixture(scope="module")
def sbom(trained_run):
    text, flagged = sbom_for_bundle(trained_run / "bundle")
    return text, json.loads(text), flagged


def test_sbom_validates_against_the_cyclonedx_schema(sbom):
    text, document, _ = sbom
    assert validation_errors(text) is None
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    broken = dict(document, components=[{"name": "x"}])  # a component without its type
    assert validation_errors(json.dumps(broken)) is not None


def test_sbom_lists_the_runtime_with_versions_licences_and_the_device(sbom, trained_run):
    _, document, flagged = sbom
    components = {norm(c["name"]): c for c in document["components"]}
    for name in ("torch", "torchvision", "pydicom", "numpy", "safetensors", "pillow", "pylibjpeg-libjpeg",
                 "cryptography", "pydantic", "pynetdicom", "highdicom", "pandas", "scipy"):
        assert components[name]["version"] == version(name), name
        assert components[name]["purl"] == f"pkg:pypi/{name}@{version(name)}"
    assert all("licenses" in c for c in document["components"] if c["type"] == "library"
               and not any(p["value"] == "no licence declared" for p in c.get("properties", [])))
    gpl = components["pylibjpeg-libjpeg"]
    assert {"name": "cxr-device:licence-constraint", "value": "strong copyleft"} in gpl["properties"]
    assert any(line.startswith("pylibjpeg-libjpeg") and "strong copyleft" in line for line in flagged)
    for tool in ("weasyprint", "markdown", "scikit-learn", "cyclonedx-python-lib", "pytest", "jinja2"):
        assert tool not in components, tool  # documentation and test tools are not loaded by the runtime
    device = document["metadata"]["component"]
    digest = __import__("hashlib").sha256((trained_run / "bundle" / "device.json").read_bytes()).hexdigest()
    assert device["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert "timestamp" not in document["metadata"]  # no issue date known: no clock read


def test_sbom_is_deterministic(trained_run, sbom):
    assert sbom_for_bundle(trained_run / "bundle")[0] == sbom[0]


def test_the_soup_list_is_the_sboms_runtime(sbom):
    _, document, _ = sbom
    listed = {norm(c["name"]) for c in document["components"] if c["type"] == "library"}
    assert {norm(d.name) for d in runtime_distributions()} == listed


@pytest.mark.parametrize("licence, constraint", [
    ("GNU General Public License v3 (GPLv3); Other/Proprietary License", "strong copyleft"),
    ("AGPL-3.0-only", "strong copyleft"), ("LGPL-2.1-or-later", "weak copyleft"), ("MPL-2.0 AND MIT", "weak copyleft"),
    ("GNU Lesser General Public License v3 (LGPLv3)", "weak copyleft"),
    ("LicenseRef-NVIDIA-Proprietary", "proprietary terms"), ("not declared", "no licence declared"),
    ("UNKNOWN", "no licence declared"), ("BSD-3-Clause", None), ("Apache-2.0 OR BSD-2-Clause", None),
    ("MIT License", None),
])
def test_licence_constraints(licence, constraint):
    assert licence_constraint(licence) == constraint


def test_sbom_command(trained_run, tmp_path, capsys):
    out = tmp_path / "sbom.cdx.json"
    assert main(["sbom", "--bundle", str(trained_run / "bundle"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "pylibjpeg-libjpeg" in printed
    assert validation_errors(out.read_text()) is None
    assert main(["sbom", "--bundle", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2


@pytest.mark.requirement("REQ-SBOM-002")
def test_sbom_audit_keeps_a_dated_scan_record_in_the_run(trained_run, tmp_path, capsys, monkeypatch):
    import shutil
    import sys

    from fda_submission.security import vulnerabilities

    run = tmp_path / "run"
    shutil.copytree(trained_run / "bundle", run / "bundle")
    fake = tmp_path / "pip_audit.py"  # an advisory service that knows no component
    fake.write_text("import json, sys\nreqs = open(sys.argv[sys.argv.index('-r') + 1]).read().split()\n"
                    "print(json.dumps({'dependencies': [{'name': r.split('==')[0], 'skip_reason': 'not found'} "
                    "for r in reqs]}))\n")
    monkeypatch.setattr(vulnerabilities, "_pip_audit_command", lambda: [sys.executable, str(fake)])
    out = tmp_path / "sbom.cdx.json"
    assert main(["sbom", "--bundle", str(run / "bundle"), "--out", str(out), "--audit", "--date", "2026-01-02"]) == 0
    printed = capsys.readouterr().out
    assert "vulnerability scan: not scanned on 2026-01-02" in printed and "known vulnerabilit" not in printed
    record = json.loads((run / "security" / "vulnerability_scan.json").read_text())
    assert record["date"] == "2026-01-02" and record["status"] == "not scanned" and record["vulnerabilities"] == []
    document = json.loads(out.read_text())
    summary = next(p["value"] for p in document["metadata"]["properties"] if p["name"] == "cxr-device:vulnerability-scan")
    assert summary.startswith("not scanned on 2026-01-02") and validation_errors(out.read_text()) is None
    assert main(["sbom", "--bundle", str(run / "bundle"), "--out", str(out), "--audit", "--date", "2026-13-01"]) == 2
