"""What the package carries to prove its numbers: the traced context, and the evidence folder.

:func:`traced_context` wraps the documents' context (:func:`fda_submission.context.build_context`)
so that every number knows its source (:mod:`fda_submission.tracing`): the run's files by their
path relative to the run, the device profile (``profile``), and the values the renderer derives
from them (the statistical plan, the population's bands, the SOUP list, the risk rows...), which
are recorded in the package as ``evidence/derived.json``.

``evidence/`` (:func:`write_evidence`) holds a copy of every run file the documents read, the
profile as loaded, the JUnit report and ``derived.json``, and ``index.json`` with the sha256 of
each and where it came from: ``cxr-device submission --verify`` fails when one is missing,
altered, or no longer the run's. The copies carry no path of the machine that made them
(:func:`portable`): the run folder, the shared data, the installed packages, the source tree, the
home and temporary folders are written as ``$RUN``, ``$CXR_SHARED_DATA``, ``$SITE_PACKAGES``,
``$SOURCE``, ``~`` and ``$TMP``; the index keeps the sha256 of the run's own file beside the copy's.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import yaml

from cxr_device.hashing import sha256_file

from .tracing import PROFILE, Source, TracedMapping, traced, untraced

EVIDENCE = "evidence"
DERIVED = "derived.json"
INDEX = "index.json"
PROFILE_COPY = "profile.yaml"
JUNIT_COPY = "junit.xml"
RUN_FILES = "run"
#: Context keys the renderer derives from the run and the profile (recorded in derived.json).
DERIVED_KEYS = ("identity", "claim", "flag_limits", "rule_counts", "trace_summary", "soup_licences", "population",
                "development_images", "left_out", "sample_size", "expected", "agreement", "soup", "trace",
                "requirements", "hazards", "classification", "rules", "provenance", "risk_management", "usability",
                "software", "security", "guidance_map")  # risk_management, usability: the RMF and HF documents


def traced_context(context: dict) -> dict:
    """A copy of ``context`` whose data carry their sources; the texts built from numbers
    (limitations, known issues, risk rows) are built again from the traced numbers."""
    from .context import add_texts

    out = dict(context)
    for key, source in context["sources"].items():
        out[key] = traced(context[key], source)
    out["profile"] = traced(context["profile"], Source(PROFILE))
    out["assessment_files"] = [_traced_assessment(a) for a in context["assessment_files"]]
    out["comparisons"] = [TracedMapping(c, Source(c["file"]), {k: Source(DERIVED, f"comparisons.{c['folder']}.{k}")
                                                                for k in ("file", "folder", "this_device")})
                          for c in context["comparisons"]]
    if context.get("ttn"):
        out["ttn"] = TracedMapping(context["ttn"], Source(context["ttn"]["file"]), {"file": Source(DERIVED, "ttn.file")})
    for key in DERIVED_KEYS:
        out[key] = traced(context[key], Source(DERIVED, key))
    return add_texts(out)


def _traced_assessment(assessment: dict) -> TracedMapping:
    """An assessment.json traced to its file; what the renderer added to it, to derived.json."""
    added = {k: Source(DERIVED, f"assessments.{assessment['folder']}.{k}") for k in ("population_fit", "in_population")}
    return TracedMapping(assessment, Source(assessment["file"]), added)


def derived_record(context: dict) -> dict:
    """What ``derived.json`` holds: every derived value the documents may print (plain JSON)."""
    record = {key: untraced(context[key]) for key in DERIVED_KEYS}
    record["assessments"] = {a["folder"]: {"population_fit": untraced(a.get("population_fit")),
                                           "in_population": a.get("in_population")} for a in context["assessments"]}
    record["comparisons"] = {c["folder"]: {k: c[k] for k in ("file", "folder", "this_device")}
                             for c in context["comparisons"]}
    record["ttn"] = {"file": context["ttn"]["file"]} if context.get("ttn") else None
    return json.loads(json.dumps(record, default=str))


def machine_roots(run: Path) -> list[tuple[str, str]]:
    """(absolute folder, portable name) of the folders whose paths a run's files may hold, the most
    specific first."""
    source = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("CXR_SHARED_DATA", source.parent / "shared" / "data"))
    roots = {str(Path(run).resolve()): "$RUN", str(shared.resolve()): "$CXR_SHARED_DATA",
             sysconfig.get_paths()["purelib"]: "$SITE_PACKAGES", sysconfig.get_paths()["platlib"]: "$SITE_PACKAGES",
             str(source): "$SOURCE", str(Path.home()): "~", str(Path(tempfile.gettempdir()).resolve()): "$TMP"}
    return sorted(((root, name) for root, name in roots.items() if len(root) > 1), key=lambda r: -len(r[0]))


def portable(text: str, roots: list[tuple[str, str]]) -> str:
    """``text`` with every path under one of ``roots`` written from its portable name."""
    for root, name in roots:
        text = re.sub(re.escape(root) + r"(?![^/\\\s\"',;<>)\]}])", name.replace("\\", "\\\\"), text)
    return text


def _copy_portable(source: Path, target: Path, roots: list[tuple[str, str]]) -> str:
    """Copy a file, a text file without the machine's paths (:func:`portable`); returns the
    source's sha256 (read once)."""
    data = source.read_bytes()
    try:
        target.write_text(portable(data.decode("utf-8"), roots), encoding="utf-8", newline="")
    except UnicodeDecodeError:
        target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_evidence(package: Path, context: dict, junit: Path | None) -> dict:
    """Copy the run files the documents read, the profile, the JUnit report and derived.json into
    ``package/evidence`` and write its index (file -> sha256 and origin). Returns the index."""
    root = package / EVIDENCE
    root.mkdir(parents=True, exist_ok=True)
    run = Path(context["run"]["path"])
    roots = machine_roots(run)
    index: dict[str, dict] = {}
    files = [(Path(i["file"]) if Path(i["file"]).is_absolute() else run / i["file"], i["file"])
             for i in context["provenance"]]
    if (run / "manifest.json").is_file():
        files.append((run / "manifest.json", "manifest.json"))
    for source, name in files:
        target = root / RUN_FILES / _safe_relative(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        run_sha256 = _copy_portable(source, target, roots)
        index[target.relative_to(package).as_posix()] = {"sha256": sha256_file(target), "run_file": name,
                                                         "run_sha256": run_sha256}
    (root / PROFILE_COPY).write_text(yaml.safe_dump(_plain_profile(context["profile"]), sort_keys=True,
                                                    allow_unicode=True))
    index[f"{EVIDENCE}/{PROFILE_COPY}"] = {"sha256": sha256_file(root / PROFILE_COPY), "run_file": None}
    if junit is not None and Path(junit).is_file():
        _copy_portable(Path(junit), root / JUNIT_COPY, roots)
        index[f"{EVIDENCE}/{JUNIT_COPY}"] = {"sha256": sha256_file(root / JUNIT_COPY), "run_file": None}
    (root / DERIVED).write_text(json.dumps(derived_record(context), indent=2, sort_keys=True) + "\n")
    index[f"{EVIDENCE}/{DERIVED}"] = {"sha256": sha256_file(root / DERIVED), "run_file": None}
    (root / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def _plain_profile(profile: dict) -> Any:
    """The profile as YAML-safe data (dates as ISO text)."""
    return json.loads(json.dumps(untraced(profile), default=str))


def _safe_relative(name: str) -> str:
    """A run-relative path as a path inside evidence/run (an absolute one keeps its tail)."""
    path = Path(name)
    return Path(*path.parts[1:]).as_posix() if path.is_absolute() else path.as_posix()
