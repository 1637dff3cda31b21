"""Security testing, from the tests themselves: the security test modules (``testing.yaml``),
their results in the JUnit report, and the versions of the tools they ran with (recorded in the
same report by ``tests/conftest.py``). No independent penetration test exists, and the record
says so (:data:`PENETRATION_TEST`).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from cxr_device.yaml_io import load_yaml

from ..software.testing_summary import module_of, suite_properties
from ..trace import junit_results

TESTING_FILE = "testing.yaml"
PENETRATION_TEST = ("No independent penetration test of the device exists: the security testing below is the "
                    "project's own test suite. A penetration test by a party independent of the developers is "
                    "to be commissioned by the manufacturer before release.")


def testing_path() -> Path:
    return Path(str(resources.files("fda_submission") / "security" / TESTING_FILE))


def security_testing(junit: str | Path | None, tests_dir: str | Path | None = None) -> dict:
    """``{"modules", "tools", "libraries", "total", "penetration_test", "junit"}``: each security
    test module with what it covers and its passed / failed / skipped counts (None without a
    report), and the tool versions the report records. ``tests_dir`` (when given) marks modules
    that are not in the repository's tests."""
    table = (load_yaml(testing_path(), "security testing") or {}).get("modules", {})
    counts: dict[str, dict] = {}
    properties: dict[str, str] = {}
    if junit is not None:
        for name, result, _ in junit_results(junit):
            module = module_of(name)
            if module in table:
                row = counts.setdefault(module, {"passed": 0, "failed": 0, "skipped": 0, "total": 0})
                row[result] += 1
                row["total"] += 1
        properties = suite_properties(junit)
    present = {p.stem for p in Path(tests_dir).glob("test_*.py")} if tests_dir else None
    modules = [{"module": m, "kind": v["kind"], "covers": v["covers"],
                "counts": counts.get(m, {"passed": 0, "failed": 0, "skipped": 0, "total": 0}) if junit else None,
                "exists": None if present is None else m in present} for m, v in table.items()]
    total = {k: sum(m["counts"][k] for m in modules) for k in ("passed", "failed", "skipped", "total")} if junit else None
    return {"modules": modules, "total": total, "junit": junit is not None,
            "tools": {k.split(":", 2)[2]: v for k, v in sorted(properties.items()) if ":tool:" in k},
            "libraries": {k.split(":", 2)[2]: v for k, v in sorted(properties.items()) if ":library:" in k},
            "penetration_test": PENETRATION_TEST}
