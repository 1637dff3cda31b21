"""Document control: the number, revision, date, author and approvals of every document.

Nothing here reads the clock: the date is the profile's ``document_control.date`` or, without
one, the day the device was locked (``manifest.json``, the ``evaluate`` step's ``finished_at``),
so the same inputs give byte-identical documents. A value neither gives is a visible marker
(:mod:`fda_submission.completeness`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cxr_device.run_layout import RunLayout

from .completeness import todo, value_or_todo

#: Every document of the package: name -> (code, title). The order is the reading order.
DOCUMENTS: dict[str, tuple[str, str]] = {
    "package_index": ("IDX", "Package index: scope, documents, fields to complete, evidence"),
    "device_description": ("DD", "Device description, classification and indications for use"),
    "algorithm_description": ("AD", "Algorithm description"),
    "validation_plan": ("VP", "Validation plan"),
    "summary_510k": ("510K", "510(k) summary (skeleton)"),
    "labeling": ("IFU", "Instructions for use and labeling (draft)"),
    "risk_management": ("RMF", "Risk management file (ISO 14971)"),
    "usability": ("HF", "Usability engineering summary (IEC 62366-1)"),
    "software_documentation": ("SW", "Software documentation"),  # fda_submission/software
    "cybersecurity": ("CYB", "Cybersecurity"),  # fda_submission/security
    "pccp": ("PCCP", "Predetermined change control plan (skeleton)"),
    "postmarket_plan": ("PMS", "Postmarket monitoring plan"),
    "appendices": ("APP", "Appendices: provenance, SOUP and SBOM, traceability"),
}
#: Documents long enough to open with a contents list.
LONG_DOCUMENTS = frozenset({"algorithm_description", "validation_plan", "appendices", "risk_management", "usability",
                            "software_documentation", "cybersecurity"})


@dataclass(frozen=True)
class IssueDate:
    """The date every document carries, and where it comes from."""

    text: str
    source: str


def issue_date(profile: dict, run_dir: str | Path) -> IssueDate:
    """The profile's date, else the evaluate step's finish date in manifest.json, else a marker."""
    given = profile["document_control"]["date"]
    if given:
        return IssueDate(given.isoformat(), "profile: document_control.date")
    manifest = RunLayout(run_dir).manifest
    try:
        finished = json.loads(manifest.read_text())["steps"]["evaluate"]["finished_at"]
        return IssueDate(str(finished)[:10], "manifest.json: steps.evaluate.finished_at (the day the device was locked)")
    except (OSError, ValueError, KeyError, TypeError):
        return IssueDate(todo("document_control.date", "issue date"), "not recorded")


def controls(profile: dict, date: IssueDate) -> dict[str, dict]:
    """The control block of every document: id, title, revision, date, author, approvers."""
    dc = profile["document_control"]
    prefix = value_or_todo(dc["id_prefix"], "document_control.id_prefix", "document number prefix")
    approvers = [{"name": a["name"], "role": a["role"]} for a in dc["approvers"]] or \
        [{"name": todo("document_control.approvers", "approver name"),
          "role": todo("document_control.approvers", "approver role")}]
    revision = value_or_todo(dc["revision"], "document_control.revision", "revision")
    history = [{"revision": r["revision"], "date": r["date"].isoformat() if hasattr(r["date"], "isoformat")
                else str(r["date"]), "description": r["description"]} for r in dc.get("history") or []] or \
        [{"revision": revision, "date": date.text, "description": "first issue"}]
    return {name: {"name": name, "id": f"{prefix}-{code}", "code": code, "title": title, "revision": revision,
                   "date": date.text, "date_source": date.source,
                   "author": value_or_todo(dc["author"], "document_control.author", "author"),
                   "approvers": approvers, "history": history, "long": name in LONG_DOCUMENTS}
            for name, (code, title) in DOCUMENTS.items()}
