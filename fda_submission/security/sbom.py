"""The CycloneDX SBOM of the device's runtime, measured by importing it.

What the runtime is, is measured, not listed: :func:`measure_runtime` starts a fresh interpreter
that imports every module ``predict``, ``serve`` and ``assess`` can load - the product's runtime
modules and the third-party modules they name, lazy imports included
(:func:`fda_submission.software.import_graph.runtime_import_targets`) - and reports

* the distribution of every loaded module, by its top-level name
  (:func:`importlib.metadata.packages_distributions`; a name several distributions share, such
  as a namespace package, goes to the distribution whose RECORD holds the module's file), and
* the distribution of every shared library the process mapped (``/proc/self/maps``: the NVIDIA
  libraries PyTorch loads are files, not modules; on a system without ``/proc`` this part is
  not measured, and the SBOM says so).

The product itself (``cxr-device``) is the SBOM's metadata component, not a library.

Each component carries its version, supplier (from its metadata: maintainer or author, home
page), licence, a sha256 over its RECORD entries (the installer's list of every installed file
with that file's own sha256; none for a distribution installed without RECORD), the modules and
libraries that brought it in, and its level of support and end of support from the maintained
table ``support.yaml`` (:func:`support_of`) - an explicit ``unknown`` otherwise, which
:func:`support_unknowns` lists for ``cxr-device submission --check``. Known vulnerabilities come
from a scan record (:mod:`fda_submission.security.vulnerabilities`); without one the SBOM says
"not scanned", never "none".

Deterministic: the same environment, device, scan record and date give the same bytes (serial
number derived from the content, timestamp = the issue date, components sorted).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from cxr_device.yaml_io import load_yaml

from ..software.import_graph import (
    PACKAGES,
    build_graph,
    installed_sources,
    runtime_import_targets,
)
from ..soup import PURPOSE, licence_of

PRODUCT = "cxr-device"
SPEC_VERSION = "1.6"
UNKNOWN = "unknown"
SUPPORT_FILE = "support.yaml"
MEASURE_TIMEOUT = 300  # seconds: importing PyTorch on a slow disk takes tens of seconds

STRONG, WEAK, PROPRIETARY, UNDECLARED = ("strong copyleft", "weak copyleft", "proprietary terms",
                                         "no licence declared")
_CONSTRAINTS = ((STRONG, re.compile(r"(?<![L])\bA?GPL|GNU (Affero )?General Public", re.IGNORECASE)),
                (WEAK, re.compile(r"\bLGPL|Lesser General|\bMPL\b|Mozilla Public|\bEPL\b|Eclipse Public",
                                  re.IGNORECASE)),
                (PROPRIETARY, re.compile(r"proprietary|LicenseRef-NVIDIA", re.IGNORECASE)),
                (UNDECLARED, re.compile(r"^(not declared|UNKNOWN)$", re.IGNORECASE)))

# The child interpreter: import each target, then report what is loaded. Printed as one JSON line.
_MEASURE = r"""
import importlib, json, sys, platform
from importlib.metadata import packages_distributions, distribution
targets = json.loads(sys.argv[1])
failed = {}
for target in targets:
    try:
        importlib.import_module(target)
    except Exception as err:  # an optional package that is not installed: recorded, not fatal
        failed[target] = f"{type(err).__name__}: {err}"[:300]
modules = {}
for name, module in list(sys.modules.items()):
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top.startswith("_frozen"):
        continue
    modules.setdefault(top, [])
    path = getattr(module, "__file__", None)
    if path:
        modules[top].append(path)
libraries = None
try:
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split(None, 5)[5].strip() for line in maps
                            if len(line.split(None, 5)) == 6 and ".so" in line.split(None, 5)[5]})
except OSError:
    pass
print(json.dumps({"python": platform.python_version(), "implementation": platform.python_implementation(),
                  "platform": sys.platform, "failed": failed, "modules": {k: sorted(v) for k, v in modules.items()},
                  "top_level": packages_distributions(), "libraries": libraries}))
"""


def norm(name: str) -> str:
    """The normalised distribution name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def licence_constraint(licence: str) -> str | None:
    """What a licence text or SPDX expression constrains about distribution, or None."""
    for label, pattern in _CONSTRAINTS:
        if pattern.search(licence):
            return label
    return None


@dataclass(frozen=True)
class Measurement:
    """What a fresh interpreter loaded when it imported the runtime."""

    python: str
    implementation: str
    platform: str
    targets: tuple[str, ...]
    failed: dict[str, str]  # import target -> why it could not be imported
    distributions: dict[str, dict] = field(default_factory=dict)  # name -> {"modules": [...], "libraries": [...]}
    libraries_measured: bool = True


@functools.lru_cache(maxsize=4)
def _measure(targets: tuple[str, ...], executable: str, path: tuple[str, ...]) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    done = subprocess.run([executable, "-c", _MEASURE, json.dumps(list(targets))], capture_output=True, text=True,
                          timeout=MEASURE_TIMEOUT, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring the runtime failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def measure_runtime(targets: list[str] | None = None) -> Measurement:
    """Import ``targets`` (default: everything ``predict``, ``serve`` and ``assess`` can load, from
    the import graph) in a fresh interpreter of this Python, with this product's source first on
    its path, and map what it loaded to installed distributions. Cached per process (the
    environment does not change under a running process)."""
    targets = sorted(targets if targets is not None else runtime_import_targets(build_graph()))
    source_roots = tuple(sorted({str(p.parent) for p in installed_sources(PACKAGES).values()}))
    return _measurement(tuple(targets), sys.executable, source_roots)


@functools.lru_cache(maxsize=4)
def _measurement(targets: tuple[str, ...], executable: str, source_roots: tuple[str, ...]) -> Measurement:
    raw = json.loads(_measure(targets, executable, source_roots))
    found: dict[str, dict] = {}

    def add(dist_name: str, kind: str, what: str) -> None:
        try:
            name = distribution(dist_name).metadata["Name"]
        except PackageNotFoundError:
            return
        entry = found.setdefault(name, {"modules": set(), "libraries": set()})
        entry[kind].add(what)

    owners = _file_owners()
    for top, files in sorted(raw["modules"].items()):
        candidates = raw["top_level"].get(top, [])
        if len(candidates) == 1:
            add(candidates[0], "modules", top)
        else:  # shared top-level name (namespace package): the owner of each loaded file
            for path in files:
                owner = owners.get(_real(path))
                if owner:
                    add(owner, "modules", top)
    for library in raw["libraries"] or []:
        owner = owners.get(_real(library))
        if owner:
            add(owner, "libraries", Path(library).name)
    distributions = {name: {"modules": sorted(v["modules"]), "libraries": sorted(v["libraries"])}
                     for name, v in sorted(found.items(), key=lambda kv: norm(kv[0])) if norm(name) != PRODUCT}
    return Measurement(raw["python"], raw["implementation"], raw["platform"], targets, raw["failed"], distributions,
                       raw["libraries"] is not None)


@functools.lru_cache(maxsize=1)
def _file_owners() -> dict[str, str]:
    """Installed file (resolved path) -> its distribution, from every distribution's RECORD."""
    from importlib.metadata import distributions

    owners: dict[str, str] = {}
    for dist in distributions():
        for file in dist.files or []:
            if file.suffix in (".py", ".pyc") or ".so" in file.name:
                owners.setdefault(_real(str(dist.locate_file(file))), dist.metadata["Name"])
    return owners


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except OSError:
        return path


# --- each component's record ------------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def record_sha256(name: str) -> tuple[str | None, int]:
    """sha256 over a distribution's RECORD entries (sorted lines, the RECORD's own line left out)
    and how many entries carry their file's hash; (None, 0) without a RECORD."""
    dist = distribution(name)
    text = dist.read_text("RECORD")
    if not text:
        return None, 0
    lines = sorted(line.strip() for line in text.splitlines()
                   if line.strip() and not line.split(",")[0].endswith(".dist-info/RECORD"))
    hashed = sum(1 for line in lines if len(line.split(",")) >= 2 and line.split(",")[1].startswith("sha256="))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), hashed


def supplier_of(meta) -> dict:
    """``{"name", "url"}`` from a distribution's metadata: maintainer, else author (the name part of
    their e-mail field when the name field is empty), and its home page or first project URL."""
    name = None
    for field_name, email_field in (("Maintainer", "Maintainer-email"), ("Author", "Author-email")):
        value = (meta.get(field_name) or "").strip()
        if not value and meta.get(email_field):
            value = ", ".join(part.split("<")[0].strip().strip('"') for part in meta[email_field].split(",")
                              if part.split("<")[0].strip())
        if value and value.upper() != "UNKNOWN":
            name = value[:120]
            break
    url = (meta.get("Home-page") or "").strip() or None
    if not url:
        for entry in meta.get_all("Project-URL") or []:
            label, _, link = entry.partition(",")
            if link.strip().startswith("http"):
                url = link.strip()
                if label.strip().lower() in ("homepage", "home", "source", "repository"):
                    break
    return {"name": name or "not declared", "url": url if url and url.startswith(("http://", "https://")) else None}


def support_path() -> Path:
    return Path(str(resources.files("fda_submission") / "security" / SUPPORT_FILE))


@functools.lru_cache(maxsize=2)
def _support_table(path: str) -> dict:
    table = load_yaml(Path(path), "support table") or {}
    return {"default": table.get("default") or {}, "python": table.get("python") or {},
            "components": {norm(k): v for k, v in (table.get("components") or {}).items()}}


def support_of(name: str, path: str | Path | None = None) -> dict:
    """``{"level", "end_of_support", "basis"}`` of a distribution from the support table: its own
    entry, else the table's default level; ``unknown`` where neither says."""
    table = _support_table(str(path or support_path()))
    entry = {**table["default"], **table["components"].get(norm(name), {})}
    end = entry.get("end_of_support")
    return {"level": str(entry.get("level") or UNKNOWN), "end_of_support": str(end) if end else UNKNOWN,
            "basis": str(entry.get("basis") or ("support table default" if table["default"] else "not in the table"))}


def python_support(version: str, path: str | Path | None = None) -> dict:
    """Support of the interpreter's minor version (``3.11``) from the table's ``python`` section."""
    table = _support_table(str(path or support_path()))
    minor = ".".join(version.split(".")[:2])
    entry = table["python"].get(minor) or {}
    return {"level": str(entry.get("level") or UNKNOWN), "end_of_support": str(entry.get("end_of_support") or UNKNOWN),
            "basis": str(entry.get("basis") or "not in the table")}


def components(measurement: Measurement | None = None) -> list[dict]:
    """Every measured distribution as plain data, sorted by normalised name: name, version,
    purl, licence and its constraint, supplier, RECORD hash, purpose, what loaded it, support."""
    measurement = measurement or measure_runtime()
    out = []
    for name, loaded in measurement.distributions.items():
        dist = distribution(name)
        meta = dist.metadata
        digest, hashed = record_sha256(name)
        licence = licence_of(meta)
        out.append({"name": meta["Name"], "version": dist.version, "purl": f"pkg:pypi/{norm(name)}@{dist.version}",
                    "licence": licence, "constraint": licence_constraint(licence), "supplier": supplier_of(meta),
                    "record_sha256": digest, "record_entries_hashed": hashed,
                    "purpose": PURPOSE.get(norm(name), ""),
                    "modules": loaded["modules"], "libraries": loaded["libraries"],
                    "requires": _requires(dist, measurement), "support": support_of(name)})
    for c in out:
        if norm(c["name"]) not in PURPOSE:
            users = [d["name"] for d in out if norm(c["name"]) in d["requires"]]
            c["purpose"] = f"required by {', '.join(users)}" if users else \
                "imported at run time without being a declared requirement of another component (" \
                + ", ".join(c["modules"] or c["libraries"]) + ")"
    return sorted(out, key=lambda c: norm(c["name"]))


def _requires(dist, measurement: Measurement) -> list[str]:
    """The measured distributions this one declares it requires (names normalised)."""
    from packaging.requirements import InvalidRequirement, Requirement

    present = {norm(n) for n in measurement.distributions}
    out = set()
    for text in dist.requires or []:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if norm(requirement.name) in present and (requirement.marker is None or "extra" not in str(requirement.marker)):
            out.add(norm(requirement.name))
    return sorted(out)


def support_unknowns(items: list[dict], python: dict | None = None) -> list[str]:
    """Every component (and the interpreter) whose level of support or end of support is unknown:
    ``name version: what is unknown``, in component order."""
    rows = [(f"{c['name']} {c['version']}", c["support"]) for c in items]
    if python is not None:
        rows.append((f"Python {python['version']}", python["support"]))
    return [f"{label}: " + " and ".join(k.replace("_", " ") for k in ("level", "end_of_support") if s[k] == UNKNOWN)
            for label, s in rows if UNKNOWN in (s["level"], s["end_of_support"])]


# --- the document -------------------------------------------------------------------------------
def build_sbom(identity: dict, record: dict, issued: str | None, manufacturer: str | None = None,
               scan: dict | None = None) -> str:
    """The CycloneDX 1.6 JSON document: the device (name, version, device.json sha256) as the
    metadata component; the interpreter (a ``platform`` component) and every measured
    distribution as components with their dependency graph; the vulnerabilities of the scan
    record, or a ``cxr-device:vulnerability-scan`` property saying it was not scanned. ``record``
    is :func:`sbom_record`'s."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    from .vulnerabilities import cyclonedx_vulnerabilities, scan_summary

    licences = LicenseFactory()
    device = Component(name=identity["name"], version=identity["version"], type=ComponentType.APPLICATION,
                       bom_ref=f"device:{identity['device_sha256']}",
                       hashes=[HashType(alg=HashAlgorithm.SHA_256, content=identity["device_sha256"])],
                       description="locked device bundle; the hash is the sha256 of bundle/device.json",
                       properties=[Property(name="cxr-device:weights-sha256", value=identity["weights_sha256"]),
                                   Property(name="cxr-device:input-rules-sha256", value=identity["rules_sha256"]),
                                   Property(name="cxr-device:package-version", value=identity["package_version"])])
    items, python = record["components"], record["python"]
    interpreter = Component(name=python["implementation"], version=python["version"], type=ComponentType.PLATFORM,
                            bom_ref=f"platform:python@{python['version']}", properties=_support_properties(python["support"]))
    built = {}
    for c in items:
        properties = [Property(name="cxr-device:purpose", value=c["purpose"]),
                      *(Property(name="cxr-device:loaded-module", value=m) for m in c["modules"]),
                      *(Property(name="cxr-device:loaded-library", value=m) for m in c["libraries"]),
                      *_support_properties(c["support"])]
        if c["constraint"]:
            properties.append(Property(name="cxr-device:licence-constraint", value=c["constraint"]))
        if c["record_sha256"]:
            properties.append(Property(name="cxr-device:hash-basis",
                                       value=f"sha256 over the {c['record_entries_hashed']} hashed entries of the "
                                             "installed RECORD"))
        else:
            properties.append(Property(name="cxr-device:hash-basis", value="none: installed without a RECORD"))
        if scan is not None:
            properties.append(Property(name="cxr-device:vulnerability-scan", value=scan_summary(scan, c["name"])))
        supplier = c["supplier"]
        built[norm(c["name"])] = Component(
            name=c["name"], version=c["version"], type=ComponentType.LIBRARY, bom_ref=c["purl"],
            purl=PackageURL.from_string(c["purl"]), properties=properties,
            supplier=OrganizationalEntity(name=supplier["name"], urls=[XsUri(supplier["url"])] if supplier["url"] else None),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=c["record_sha256"])] if c["record_sha256"] else None,
            external_references=[ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri(supplier["url"]))]
            if supplier["url"] else None,
            licenses=[licences.make_from_string(c["licence"])] if c["constraint"] != UNDECLARED else [])
    timestamp = dt.datetime.fromisoformat(issued).replace(tzinfo=dt.timezone.utc) \
        if issued and re.fullmatch(r"\d{4}-\d{2}-\d{2}", issued) else None
    bom_properties = [Property(name="cxr-device:measured-by", value="importing what predict, serve and assess can load "
                                                                    "in a fresh interpreter (fda_submission.security.sbom)"),
                      Property(name="cxr-device:vulnerability-scan", value=scan_summary(scan)),
                      Property(name="cxr-device:shared-libraries",
                               value="measured (/proc/self/maps)" if record["libraries_measured"] else
                               "not measured on this platform (no /proc/self/maps)")]
    bom_properties += [Property(name="cxr-device:not-importable", value=f"{k}: {v}") for k, v in
                       sorted(record["failed"].items())]
    serial = uuid.uuid5(uuid.NAMESPACE_URL, "cxr-device-sbom:" + identity["device_sha256"] + ":" + python["version"]
                        + ":" + ",".join(c["purl"] for c in items) + ":" + json.dumps(scan, sort_keys=True))
    metadata = BomMetaData(component=device, timestamp=timestamp, properties=bom_properties,
                           manufacturer=OrganizationalEntity(name=manufacturer) if manufacturer else None)
    bom = Bom(components=[interpreter, *built.values()], metadata=metadata, serial_number=serial,
              vulnerabilities=cyclonedx_vulnerabilities(scan, {norm(c["name"]): c["purl"] for c in items}))
    if timestamp is None:
        bom.metadata.timestamp = None
    required = {r for c in items for r in c["requires"]}
    bom.register_dependency(device, [interpreter, *(built[k] for k in sorted(built) if k not in required)])
    for c in items:
        bom.register_dependency(built[norm(c["name"])], [built[r] for r in c["requires"] if r in built])
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def _support_properties(support: dict) -> list:
    from cyclonedx.model import Property

    return [Property(name="cxr-device:level-of-support", value=support["level"]),
            Property(name="cxr-device:end-of-support", value=support["end_of_support"]),
            Property(name="cxr-device:support-basis", value=support["basis"])]


def validation_errors(text: str) -> str | None:
    """None when ``text`` is valid CycloneDX 1.6 JSON (the library's schema validator; needs the
    ``cyclonedx-python-lib[json-validation]`` extra), else the validator's message."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)


def sbom_record(measurement: Measurement | None = None) -> dict:
    """The runtime as the SBOM and the documents show it: ``{"python": {"implementation",
    "version", "support"}, "components", "unknown_support", "failed", "libraries_measured",
    "n_targets"}`` (plain data)."""
    measurement = measurement or measure_runtime()
    items = components(measurement)
    python = {"implementation": measurement.implementation, "version": measurement.python,
              "support": python_support(measurement.python)}
    return {"python": python, "components": items, "unknown_support": support_unknowns(items, python),
            "failed": dict(measurement.failed), "libraries_measured": measurement.libraries_measured,
            "n_targets": len(measurement.targets)}
