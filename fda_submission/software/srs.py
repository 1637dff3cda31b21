"""Software requirements specification: every requirement of ``requirements.yaml`` with its
inputs, outputs, errors, limits and defaults (the file's optional structured fields), and its
trace - the tests verifying it with their latest results (a JUnit report), the hazards of the
risk file it controls, and the security controls it implements.
"""
from __future__ import annotations

from ..trace import SPEC_FIELDS


def requirement_specs(requirements: list[dict], trace_rows: list[dict] | None, hazards: list[dict],
                      controls: list[dict] | None = None) -> list[dict]:
    """One entry per requirement, in file order: ``{"id", "text", "inputs", "outputs", "errors",
    "limits", "status", "tests", "hazards", "controls"}``; ``status`` and ``tests`` are None
    without a JUnit report."""
    by_id = {row["id"]: row for row in trace_rows or []}
    out = []
    for r in requirements:
        row = by_id.get(r["id"])
        out.append({"id": r["id"], "text": r["text"], **{k: list(r.get(k, [])) for k in SPEC_FIELDS},
                    "status": row["status"] if row else None, "tests": row["grouped"] if row else None,
                    "hazards": [h["id"] for h in hazards if r["id"] in h["requirements"]],
                    "controls": [c["id"] for c in controls or [] if r["id"] in c["requirements"]]})
    return out


def spec_problems(requirements: list[dict]) -> list[str]:
    """Requirements missing a structured field: ``REQ-...: no inputs, errors``."""
    out = []
    for r in requirements:
        missing = [k for k in SPEC_FIELDS if not r.get(k)]
        if missing:
            out.append(f"{r['id']}: no {', '.join(missing)}")
    return out
