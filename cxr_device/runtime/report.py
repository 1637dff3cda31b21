"""What ``predict`` prints or writes: a terminal table, JSON or CSV, one entry per input.

Input-derived text (paths, header values in findings) is escaped for the terminal and
neutralised for spreadsheets (:mod:`cxr_device.safe_text`); PHI appears only when the results
carry it (``--show-phi``).
"""
from __future__ import annotations

import csv
import io
import json

from ..provenance import producer
from ..safe_text import spreadsheet_cell, terminal
from .header_check import UNREADABLE
from .pipeline import ACCEPTED, REFUSED, Prediction

FORMATS = ("table", "json", "csv")
CSV_COLUMNS = ["path", "sop_instance_uid", "status", "probability", "decision", "threshold", "reason", "note"]


def render(results: list[Prediction], fmt: str) -> str:
    """The whole report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return json.dumps({"files": [r.as_dict() for r in results], "summary": summary(results),
                           "produced_by": producer("predict")}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([spreadsheet_cell(v) for v in (
                r.path, r.sop_instance_uid, r.status, "" if r.probability is None else f"{r.probability:.6f}",
                r.decision or "", "" if r.threshold is None else f"{r.threshold:.6f}", r.reason, r.note)])
        return buffer.getvalue()
    return _table(results)


def _table(results: list[Prediction]) -> str:
    lines = []
    for r in results:
        if r.status == ACCEPTED:
            lines.append(f"{r.decision.upper():<13} p={r.probability:.3f} (threshold {r.threshold:.3f})  {r.path}")
            if r.note:
                lines.append(f"{'':<13} {r.note}")
            if r.heatmap:
                lines.append(f"{'':<13} heatmap: {r.heatmap}")
        else:
            lines.append(f"{r.status.upper():<13} {r.path}")
            errors = [f for f in r.findings if f["severity"] == "error"]
            for f in errors or [{"rule": r.status, "message": r.reason}]:
                lines.append(f"{'':<13} {f['rule']}: {f['message']}")
        if r.phi:
            lines.append(f"{'':<13} PHI: " + ", ".join(f"{k}={v}" for k, v in r.phi.items()))
    s = summary(results)
    lines += ["", summary_line(s)]
    return "\n".join(terminal(line) for line in lines) + "\n"


def summary(results: list[Prediction]) -> dict:
    """Counts by status and the number of pneumonia decisions."""
    def count(status: str) -> int:
        return sum(r.status == status for r in results)

    return {"files": len(results), ACCEPTED: count(ACCEPTED), REFUSED: count(REFUSED), UNREADABLE: count(UNREADABLE),
            "pneumonia": sum(r.decision == "pneumonia" for r in results)}


def summary_line(s: dict) -> str:
    """``3 file(s): 1 accepted (1 pneumonia), 1 refused, 1 unreadable``."""
    return (f"{s['files']} file(s): {s[ACCEPTED]} accepted ({s['pneumonia']} pneumonia), {s[REFUSED]} refused, "
            f"{s[UNREADABLE]} unreadable")
