"""The CycloneDX SBOM of the device runtime: valid against the schema (the library's validator),
every runtime distribution with its version and licence, distribution-constraining licences
flagged, nothing of the documentation tools, deterministic, and complete: every distribution the
runtime loads in a fresh interpreter is in it."""
from __future__ import annotations

import json
import subprocess
import sys
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

RUNTIME_IMPORTS = ("cxr_device.runtime.bundle", "cxr_device.runtime.pipeline", "cxr_device.runtime.inference",
                   "cxr_device.runtime.commands", "cxr_device.runtime.report")


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
                 "cryptography", "pydantic"):
        assert components[name]["version"] == version(name), name
        assert components[name]["purl"] == f"pkg:pypi/{name}@{version(name)}"
    assert all("licenses" in c for c in document["components"]
               if not any(p["value"] == "no licence declared" for p in c.get("properties", [])))
    gpl = components["pylibjpeg-libjpeg"]
    assert {"name": "cxr-device:licence-constraint", "value": "strong copyleft"} in gpl["properties"]
    assert any(line.startswith("pylibjpeg-libjpeg") and "strong copyleft" in line for line in flagged)
    for tool in ("weasyprint", "markdown", "pandas", "scikit-learn", "cyclonedx-python-lib", "pytest"):
        assert tool not in components, tool  # documentation, training and test tools are not the device
    device = document["metadata"]["component"]
    digest = __import__("hashlib").sha256((trained_run / "bundle" / "device.json").read_bytes()).hexdigest()
    assert device["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert "timestamp" not in document["metadata"]  # no issue date known: no clock read


def test_sbom_is_deterministic(trained_run, sbom):
    assert sbom_for_bundle(trained_run / "bundle")[0] == sbom[0]


def test_every_distribution_the_runtime_loads_is_in_the_sbom():
    code = ("import sys, json\n" + "".join(f"import {m}\n" for m in RUNTIME_IMPORTS)
            + "from importlib.metadata import packages_distributions as pd\n"
            "m = pd(); tops = {n.split('.')[0] for n in list(sys.modules)}\n"
            "print(json.dumps(sorted({d for t in tops for d in m.get(t, [])})))\n")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    listed = {norm(d.name) for d in runtime_distributions()}
    missing = {norm(d) for d in loaded} - listed - {"cxr-device"}
    assert not missing, f"the runtime loads distributions the SBOM does not list: {sorted(missing)}"


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
