"""Traceability: requirements (ids in ``requirements.yaml``) -> the tests that verify them (the
``requirement`` pytest marker) -> each test's latest result (a JUnit XML report).

pytest writes the markers into the JUnit report as ``<property name="requirement" ...>`` (see
``tests/conftest.py``), so the matrix is built from the report alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree as ET

from cxr_device.errors import CxrDeviceError
from cxr_device.yaml_io import load_yaml

VERIFIED, FAILED, NOT_RUN, NO_TEST = "verified", "failed", "not run (skipped)", "no test"


@dataclass
class TraceRow:
    id: str
    text: str
    tests: list[tuple[str, str]] = field(default_factory=list)  # (test name, passed|failed|skipped)

    @property
    def status(self) -> str:
        results = {r for _, r in self.tests}
        if not self.tests:
            return NO_TEST
        if "failed" in results:
            return FAILED
        return VERIFIED if "passed" in results else NOT_RUN


def default_requirements_path() -> Path:
    return Path(str(resources.files("fda_submission") / "requirements.yaml"))


#: Optional structured fields of a requirement (each a list of texts), printed by the software
#: requirements specification (fda_submission/software/srs.py).
SPEC_FIELDS = ("inputs", "outputs", "errors", "limits")


def load_requirements(path: str | Path | None = None) -> list[dict]:
    """The requirements file: a list of ``{id: REQ-..., text: ...}`` with unique ids, each with
    optional :data:`SPEC_FIELDS` (lists of texts)."""
    path = Path(path) if path else default_requirements_path()
    items = load_yaml(path, "requirements file")
    usage = (f"{path}: expected a list of {{id: REQ-..., text: ...}} with unique ids (optional lists of texts: "
             f"{', '.join(SPEC_FIELDS)})")
    if not isinstance(items, list) or not items:
        raise CxrDeviceError(usage)
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not {"id", "text"} <= set(item) or not set(item) <= {"id", "text", *SPEC_FIELDS} \
                or not all(isinstance(item[k], str) for k in ("id", "text")) or not item["id"].startswith("REQ-") \
                or not all(isinstance(item[k], list) and item[k] and all(isinstance(v, str) and v for v in item[k])
                           for k in SPEC_FIELDS if k in item):
            raise CxrDeviceError(f"{usage}; item {number} is {item!r:.80}")
    ids = [item["id"] for item in items]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise CxrDeviceError(f"{usage}; {', '.join(duplicated)} appear more than once")
    return items


def junit_results(path: str | Path) -> list[tuple[str, str, list[str]]]:
    """(test name, passed|failed|skipped, requirement ids) for every testcase of a JUnit report."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise CxrDeviceError(f"{path}: not a readable JUnit XML report ({err})") from None
    out = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        result = ("failed" if case.find("failure") is not None or case.find("error") is not None
                  else "skipped" if case.find("skipped") is not None else "passed")
        requirements = [p.get("value") for p in case.iter("property") if p.get("name") == "requirement"]
        out.append((name, result, requirements))
    return out


def trace(junit: str | Path, requirements: str | Path | None = None) -> list[TraceRow]:
    """The matrix; a test naming an unknown requirement id is an error."""
    rows = {r["id"]: TraceRow(r["id"], r["text"]) for r in load_requirements(requirements)}
    for name, result, ids in junit_results(junit):
        for rid in ids:
            if rid not in rows:
                raise CxrDeviceError(f"{name} is marked with unknown requirement {rid!r}")
            rows[rid].tests.append((name, result))
    return list(rows.values())


def grouped_tests(row: TraceRow) -> list[tuple[str, str]]:
    """Parametrised cases folded into their test: ``("test_x", "9/9 passed")``."""
    groups: dict[str, list[str]] = {}
    for name, result in row.tests:
        base = name.split("::", 1)[-1].split("[", 1)[0]
        groups.setdefault(base, []).append(result)
    return [(base, f"{results.count('passed')}/{len(results)} passed"
             + (f", {results.count('failed')} failed" if "failed" in results else ""))
            for base, results in groups.items()]


def render_matrix(rows: list[TraceRow]) -> str:
    """Markdown table: requirement, status, tests with results."""
    lines = ["| requirement | text | status | verifying tests (latest result) |", "|---|---|---|---|"]
    for row in rows:
        tests = "<br>".join(f"`{name}` ({result})" for name, result in grouped_tests(row)) or "-"
        lines.append(f"| {row.id} | {row.text} | {row.status} | {tests} |")
    return "\n".join(lines) + "\n"


def matrix_rows(junit: str | Path, requirements: str | Path | None = None) -> list[dict]:
    """The matrix as plain rows for the document templates."""
    return [{"id": r.id, "text": r.text, "status": r.status, "grouped": grouped_tests(r)}
            for r in trace(junit, requirements)]
