"""Development practices: how requirements, tests, CI, reviews and configuration management run
in this repository, read from the repository itself.

Every statement is a file or a count: the requirements file and the test markers that trace to
it, the test modules, the pytest configuration (``pyproject.toml``), the CI entry point
(``.ci/run``) and the Makefile's ``test`` recipe, the pinned versions of record
(``requirements/constraints.txt``) and the git history up to the tested commit (commits,
merges, commit messages naming an issue, ``Reviewed-by:`` trailers). What the repository does
not hold - review records beyond the git history, the manufacturer's IEC 62304 declaration -
is said to be absent, or is a profile field the owner fills.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

from ..completeness import value_or_todo
from .history import repository_of

_MARKER = re.compile(r"requirement\(([^)]*)\)")
_ISSUE = re.compile(r"(?:#\d+|\bissue[ -]\d+)", re.IGNORECASE)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _prose(script: str | None) -> list[str]:
    """The comment paragraph at the top of a script (after the shebang), up to its first list."""
    out = []
    for line in (script or "").splitlines()[1:]:
        if not re.match(r"^# (?! )", line):
            break
        out.append(line[2:].strip())
    return out


def make_recipe(makefile: str | None, target: str) -> list[str]:
    """The command lines of one Makefile target (tab-indented lines after ``target:``)."""
    if makefile is None:
        return []
    lines, out, inside = makefile.splitlines(), [], False
    for line in lines:
        if re.match(rf"^{re.escape(target)}\s*:", line):
            inside = True
            continue
        if inside:
            if line.startswith("\t"):
                out.append(line.strip())
            elif line.strip():
                break
    return out


def marked_requirements(tests_dir: Path) -> dict[str, int]:
    """Requirement id -> number of test files marking it (decorators and module ``pytestmark``)."""
    found: dict[str, int] = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        ids = {rid for args in _MARKER.findall(path.read_text(encoding="utf-8"))
               for rid in re.findall(r"REQ-[A-Z0-9]+-\d+", args)}
        for rid in ids:
            found[rid] = found.get(rid, 0) + 1
    return found


def _git_facts(repo: Path, end: str | None) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20,
                               check=True).stdout

    ref = end or "HEAD"
    subjects = git("log", "--format=%s%n%b%x00", ref).split("\x00")
    return {"commits": int(git("rev-list", "--count", ref).strip() or 0),
            "merges": int(git("rev-list", "--count", "--merges", ref).strip() or 0),
            "naming_an_issue": sum(1 for s in subjects if _ISSUE.search(s)),
            "reviewed_by": sum(1 for s in subjects if re.search(r"^Reviewed-by:", s, re.MULTILINE)),
            "up_to": ref[:12]}


def development_practices(source: str | Path, profile: dict, requirements: list[dict], end: str | None = None) -> dict:
    """The practices as plain data: ``{"repository", "requirements", "tests", "ci", "reviews",
    "configuration", "iec62304"}``; ``source`` is the product's source folder, ``end`` the commit
    the git counts stop at (the tested one)."""
    repo = repository_of(source)
    root = repo or Path(source)
    tests_dir = root / "tests"
    pyproject = _read(root / "pyproject.toml")
    pytest_config = {}
    if pyproject is not None and sys.version_info >= (3, 11):
        import tomllib

        pytest_config = tomllib.loads(pyproject).get("tool", {}).get("pytest", {}).get("ini_options", {})
    has_tests = tests_dir.is_dir()
    marked = marked_requirements(tests_dir) if has_tests else {}
    ids = [r["id"] for r in requirements]
    test_files = sorted(tests_dir.glob("test_*.py")) if has_tests else []
    test_functions = sum(len(re.findall(r"^\s*(?:async )?def test_", p.read_text(encoding="utf-8"), re.MULTILINE))
                         for p in test_files)
    ci = _read(root / ".ci" / "run")
    makefile = _read(root / "Makefile")
    constraints_path = root / "requirements" / "constraints.txt"
    constraints = _read(constraints_path)
    pins = [line for line in (constraints or "").splitlines() if re.match(r"^[A-Za-z0-9_.\-]+==", line.strip())]
    try:
        git = _git_facts(repo, end) if repo else None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {
        "repository": str(root.name) if repo else None,
        "requirements": {"file": "fda_submission/requirements.yaml", "n": len(ids),
                         "n_with_tests": sum(1 for i in ids if marked.get(i)),
                         "without_tests": [i for i in ids if has_tests and not marked.get(i)],
                         "marker": "@pytest.mark.requirement(ID)"},
        "tests": {"present": has_tests, "n_modules": len(test_files), "n_functions": test_functions,
                  "addopts": pytest_config.get("addopts"), "junit_family": pytest_config.get("junit_family"),
                  "markers": [m.split(":")[0] for m in pytest_config.get("markers", [])]},
        "ci": {"entry": ".ci/run" if ci is not None else None,
               "description": _prose(ci),
               "runs": [line.strip() for line in (ci or "").splitlines() if line.strip().startswith("make ")],
               "make_test": make_recipe(makefile, "test")},
        "reviews": {"git": git,
                    "records": "none in this repository beyond the git history (no review minutes, no approval "
                               "records, no pull-request reviews stored with the code)"},
        "configuration": {"git": repo is not None, "constraints": "requirements/constraints.txt" if constraints else None,
                          "n_pins": len(pins),
                          "constraints_sha256": hashlib.sha256(constraints.encode()).hexdigest() if constraints else None,
                          "manifest": "manifest.json of each run: sha256 of every input and output, package version, "
                                      "git commit and whether the tree was modified, seeds, library versions"},
        "iec62304": value_or_todo(profile["software"]["iec62304"], "software.iec62304",
                                  "IEC 62304 declaration: lifecycle process and software safety class"),
    }
