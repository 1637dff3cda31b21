"""Known vulnerabilities of the SBOM's components, from pip-audit, as a dated scan record.

:func:`scan` writes the components as pinned requirements (``name==version``) and runs
``pip-audit --no-deps --disable-pip --format json`` on them against an advisory service (PyPI's
by default), under a hard timeout: it never hangs, and never reports "none" for what it could
not check. Each component is *audited* (the service answered for that version) or *not audited*
(the service did not know it, could not be reached, or pip-audit is not installed), with the
reason. The record's ``status`` is ``scanned`` (every component audited), ``partly scanned``, or
``not scanned``; only audited components can be said to have no known vulnerability.

The record is a file of the run (:data:`SCAN_FILE`, written by ``cxr-device sbom --audit``),
read by the SBOM (CycloneDX ``vulnerabilities``) and the cybersecurity document; without it both
say "not scanned". Its date is passed in (the day of the scan); nothing here reads the clock.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: Where the scan record lives, relative to the run folder.
SCAN_FILE = Path("security") / "vulnerability_scan.json"
SCANNED, PARTLY, NOT_SCANNED = "scanned", "partly scanned", "not scanned"
DEFAULT_TIMEOUT = 120.0
SERVICES = ("pypi", "osv")


def _pip_audit_command() -> list[str] | None:
    try:
        version("pip-audit")
        return [sys.executable, "-m", "pip_audit"]
    except PackageNotFoundError:
        found = shutil.which("pip-audit")
        return [found] if found else None


def pip_audit_version() -> str | None:
    """The installed pip-audit's version, or None."""
    try:
        return version("pip-audit")
    except PackageNotFoundError:
        return None


def scan(packages: list[tuple[str, str]], date: str, service: str = "pypi", timeout: float = DEFAULT_TIMEOUT,
         command: list[str] | None = None) -> dict:
    """The scan record of ``packages`` (name, version) on ``date`` (YYYY-MM-DD): ``{"date", "tool",
    "service", "status", "reason", "n_components", "n_audited", "audited", "not_audited",
    "vulnerabilities"}``. ``command`` replaces the pip-audit command (tests)."""
    if service not in SERVICES:
        raise ValueError(f"unknown advisory service {service!r}; choose from {', '.join(SERVICES)}")
    packages = sorted(set(packages), key=lambda p: p[0].lower())
    command = command or _pip_audit_command()
    tool = f"pip-audit {pip_audit_version()}" if command and command == _pip_audit_command() else \
        ("pip-audit (given command)" if command else "pip-audit (not installed)")
    base = {"date": date, "tool": tool, "service": service, "n_components": len(packages)}
    if command is None:
        return _not_scanned(base, packages, "pip-audit is not installed (pip install 'cxr-device[dev]')")
    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "requirements.txt"
        requirements.write_text("".join(f"{name}=={ver}\n" for name, ver in packages))
        try:
            done = subprocess.run([*command, "-r", str(requirements), "--no-deps", "--disable-pip", "--format", "json",
                                   "--progress-spinner", "off", "--vulnerability-service", service,
                                   "--timeout", str(max(1, int(timeout / 4)))],
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return _not_scanned(base, packages, f"pip-audit did not finish within {timeout:g} s")
        except OSError as err:
            return _not_scanned(base, packages, f"pip-audit could not be started ({err})")
    try:
        report = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _not_scanned(base, packages, f"pip-audit exited with {done.returncode}: {last[:300]}")
    return parse_report(base, packages, report)


def parse_report(base: dict, packages: list[tuple[str, str]], report: dict) -> dict:
    """A scan record from pip-audit's JSON report (``dependencies`` with ``vulns`` or ``skip_reason``)."""
    versions = {_norm(n): v for n, v in packages}
    audited, not_audited, vulnerabilities = [], [], []
    for dep in report.get("dependencies", []):
        name = dep.get("name", "")
        ver = dep.get("version") or versions.get(_norm(name), "")
        if dep.get("skip_reason"):
            not_audited.append({"name": name, "version": ver, "reason": str(dep["skip_reason"])[:300]})
            continue
        audited.append({"name": name, "version": ver, "n_vulnerabilities": len(dep.get("vulns", []))})
        for v in dep.get("vulns", []):
            vulnerabilities.append({"name": name, "version": ver, "id": str(v.get("id", "")),
                                    "aliases": sorted(str(a) for a in v.get("aliases", [])),
                                    "fix_versions": [str(f) for f in v.get("fix_versions", [])],
                                    "description": str(v.get("description", ""))[:1000]})
    seen = {_norm(a["name"]) for a in audited} | {_norm(a["name"]) for a in not_audited}
    not_audited += [{"name": n, "version": v, "reason": "not in pip-audit's report"} for n, v in packages
                    if _norm(n) not in seen]
    status = SCANNED if audited and not not_audited else PARTLY if audited else NOT_SCANNED
    reason = "" if status == SCANNED else \
        f"{len(not_audited)} of {len(packages)} component(s) not audited" + \
        (f": {not_audited[0]['reason']}" if not_audited else "")
    return {**base, "status": status, "reason": reason, "n_audited": len(audited),
            "audited": sorted(audited, key=lambda a: _norm(a["name"])),
            "not_audited": sorted(not_audited, key=lambda a: _norm(a["name"])),
            "vulnerabilities": sorted(vulnerabilities, key=lambda v: (_norm(v["name"]), v["id"]))}


def _not_scanned(base: dict, packages: list[tuple[str, str]], reason: str) -> dict:
    return {**base, "status": NOT_SCANNED, "reason": reason, "n_audited": 0, "audited": [],
            "not_audited": [{"name": n, "version": v, "reason": reason} for n, v in packages], "vulnerabilities": []}


def _norm(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def read_scan(run_dir: str | Path) -> dict | None:
    """The run's scan record, or None when the run holds none."""
    path = Path(run_dir) / SCAN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_scan(run_dir: str | Path, record: dict) -> Path:
    """Write the scan record into the run (``security/vulnerability_scan.json``)."""
    path = Path(run_dir) / SCAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def scan_summary(scan: dict | None, component: str | None = None) -> str:
    """One line for the SBOM: the whole scan, or one component's result. Never "none" for what
    was not audited."""
    if scan is None:
        return "not scanned: no scan record in the run (cxr-device sbom --audit)"
    if component is None:
        head = f"{scan['status']} on {scan['date']} with {scan['tool']} ({scan['service']} advisories)"
        if scan["status"] == NOT_SCANNED:
            return f"{head}: {scan['reason']}"
        return (f"{head}: {scan['n_audited']} of {scan['n_components']} components audited, "
                f"{len(scan['vulnerabilities'])} known vulnerabilit{'y' if len(scan['vulnerabilities']) == 1 else 'ies'}"
                + (f"; {scan['reason']}" if scan["reason"] else ""))
    key = _norm(component)
    for a in scan["audited"]:
        if _norm(a["name"]) == key:
            return f"audited on {scan['date']}: {a['n_vulnerabilities']} known vulnerabilit" \
                   f"{'y' if a['n_vulnerabilities'] == 1 else 'ies'}"
    for a in scan["not_audited"]:
        if _norm(a["name"]) == key:
            return f"not audited on {scan['date']}: {a['reason']}"
    return f"not audited on {scan['date']}: not part of the scan"


def cyclonedx_vulnerabilities(scan: dict | None, purls: dict[str, str]) -> list:
    """The scan's vulnerabilities as CycloneDX objects affecting the components (by purl)."""
    if not scan:
        return []
    from cyclonedx.model import XsUri
    from cyclonedx.model.vulnerability import (
        BomTarget,
        BomTargetVersionRange,
        Vulnerability,
        VulnerabilitySource,
    )

    out = []
    for v in scan["vulnerabilities"]:
        ref = purls.get(_norm(v["name"]))
        if ref is None:
            continue
        source = VulnerabilitySource(name="OSV" if v["id"].startswith(("PYSEC", "GHSA", "OSV")) else v["id"].split("-")[0],
                                     url=XsUri(f"https://osv.dev/vulnerability/{v['id']}"))
        out.append(Vulnerability(bom_ref=f"{v['id']}:{ref}", id=v["id"], source=source, description=v["description"] or None,
                                 recommendation=("upgrade to " + " or ".join(v["fix_versions"])) if v["fix_versions"] else None,
                                 affects=[BomTarget(ref=ref, versions=[BomTargetVersionRange(version=v["version"])])]))
    return out
