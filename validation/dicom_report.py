"""check-dicom reports: a terminal table, JSON, CSV (one row per finding) and JUnit XML.

No format prints PatientName, PatientID or birth date unless the results carry them
(``--show-phi``); files are identified by path and SOP Instance UID. Paths and header values
are attacker-controlled: the table escapes control characters for the terminal, CSV cells
cannot run as spreadsheet formulas, and JUnit holds only characters XML 1.0 allows
(:mod:`cxr_device.safe_text`); JSON escapes by itself.
"""
from __future__ import annotations

import csv
import io
import json
from xml.etree import ElementTree as ET

from cxr_device.provenance import producer
from cxr_device.runtime.header_check import FAIL, PASS, UNREADABLE, FileResult
from cxr_device.runtime.input_rules import RuleSet
from cxr_device.safe_text import spreadsheet_cell, terminal, xml_text

from .dicom_check import summarise

FORMATS = ("table", "json", "csv", "junit")


def summary_line(results: list[FileResult]) -> str:
    """``checked 12 files: 8 pass, 3 fail, 1 unreadable (5 warnings)``."""
    s = summarise(results)
    return (f"checked {s['files']} file{'s' if s['files'] != 1 else ''}: {s[PASS]} pass, {s[FAIL]} fail, "
            f"{s[UNREADABLE]} unreadable ({s['warnings']} warning{'s' if s['warnings'] != 1 else ''})")


def render(results: list[FileResult], rules: RuleSet, fmt: str) -> str:
    """The whole report in ``fmt`` (one of :data:`FORMATS`)."""
    return {"table": _table, "json": _json, "csv": _csv, "junit": _junit}[fmt](results, rules)


def _table(results: list[FileResult], rules: RuleSet) -> str:
    lines = [f"rules: {rules.name} ({rules.source}, sha256 {rules.sha256[:12]})", ""]
    for r in results:
        uid = f"  [{r.sop_instance_uid}]" if r.sop_instance_uid else ""
        lines.append(f"{r.status.upper():<10} {r.path}{uid}")
        if r.phi:
            lines.append("           PHI: " + ", ".join(f"{k}={v}" for k, v in r.phi.items()))
        if r.reason:
            lines.append(f"           unreadable: {r.reason}")
        for f in r.findings:
            lines.append(f"           {f.severity:<7} {f.rule}: {f.message}")
    lines += ["", summary_line(results)]
    return "\n".join(terminal(line) for line in lines) + "\n"


def _json(results: list[FileResult], rules: RuleSet) -> str:
    document = {
        "summary": summarise(results),
        "rules": {"name": rules.name, "version": rules.version, "source": rules.source, "sha256": rules.sha256},
        "files": [r.as_dict() for r in results],
        "produced_by": producer("check-dicom"),
    }
    return json.dumps(document, indent=2) + "\n"


CSV_COLUMNS = ["path", "sop_instance_uid", "status", "severity", "rule", "attribute", "found", "expected", "message"]


def _csv(results: list[FileResult], rules: RuleSet) -> str:
    buffer = io.StringIO()
    phi_columns = sorted({k for r in results for k in r.phi})
    writer = csv.writer(buffer, lineterminator="\n")
    def row(cells: list) -> None:
        writer.writerow([spreadsheet_cell(cell) for cell in cells])

    row(CSV_COLUMNS + phi_columns)
    for r in results:
        base = [r.path, r.sop_instance_uid, r.status]
        phi = [r.phi.get(k, "") for k in phi_columns]
        if r.reason:
            row(base + ["error", "unreadable", "", "", "", r.reason] + phi)
        for f in r.findings:
            found = "<missing>" if f.found is None else f.found
            row(base + [f.severity, f.rule, f.attribute, found, f.expected, f.message] + phi)
        if not r.reason and not r.findings:
            row(base + ["", "", "", "", "", ""] + phi)
    return buffer.getvalue()


def _junit(results: list[FileResult], rules: RuleSet) -> str:
    def element(parent: ET.Element | None, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        """An element whose every attribute and text an XML 1.0 parser accepts."""
        safe = {k: xml_text(v) for k, v in attributes.items()}
        node = ET.Element(tag, safe) if parent is None else ET.SubElement(parent, tag, safe)
        if text is not None:
            node.text = xml_text(text)
        return node

    s = summarise(results)
    suites = element(None, "testsuites", name="cxr-device check-dicom", tests=str(s["files"]),
                     failures=str(s[FAIL]), errors=str(s[UNREADABLE]))
    suite = element(suites, "testsuite", name=f"check-dicom ({rules.name})", tests=str(s["files"]),
                    failures=str(s[FAIL]), errors=str(s[UNREADABLE]), skipped="0")
    for r in results:
        case = element(suite, "testcase", classname="check-dicom", name=r.path)
        if r.status == UNREADABLE:
            element(case, "error", r.reason, message=r.reason, type="unreadable")
        elif r.status == FAIL:
            messages = [f"{f.rule}: {f.message}" for f in r.errors]
            element(case, "failure", "\n".join(messages), message=messages[0], type="header")
        out = [f"SOPInstanceUID {r.sop_instance_uid}"] if r.sop_instance_uid else []
        out += [f"warning {f.rule}: {f.message}" for f in r.warnings]
        if out:
            element(case, "system-out", "\n".join(out))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
