"""The testing summary: what a JUnit report (``make test`` writes ``build/junit.xml``) shows, by
test level, with the version that was tested.

**Levels** are assigned per test module by ``test_levels.yaml`` (kept beside this file): *system*
modules drive the product as its users do - through ``cxr-device`` commands, a DICOM association
or a rendered package; *integration* modules run several modules together on real files
(cohorts from CSV and images, training, bundles, DICOM results, the documents' context); *unit*
modules test a function or class on inputs built in memory. A module the file does not name
counts as unit and :func:`testing_summary` lists it as unclassified, so a new module is
classified on purpose; :func:`level_problems` lists entries that name no test module.

**The tested version** is recorded in the report itself: ``tests/conftest.py`` writes
:func:`tested_environment` (package version, git commit and whether the tree was modified,
Python, the test tools' versions) as properties of the test suite. The summary compares it with
the run's ``manifest.json``.
"""
from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from xml.etree import ElementTree as ET

from cxr_device.errors import CxrDeviceError
from cxr_device.yaml_io import load_yaml

from ..trace import junit_results

LEVELS = ("unit", "integration", "system")
LEVELS_FILE = "test_levels.yaml"
#: Distributions whose versions the test run records.
TEST_LIBRARIES = ("pytest", "hypothesis", "pydicom", "pynetdicom", "highdicom", "torch")
#: External tools the interoperability tests drive: (property name, command, version argument).
TOOLS = (("storescu", ["storescu", "--version"]), ("echoscu", ["echoscu", "--version"]),
         ("dsrdump", ["dsrdump", "--version"]), ("Orthanc", ["Orthanc", "--version"]), ("dciodvfy", None))
PREFIX = "cxr-device:"


def levels_path() -> Path:
    return Path(str(resources.files("fda_submission") / "software" / LEVELS_FILE))


def load_levels(path: str | Path | None = None) -> dict[str, str]:
    """Test module name (``test_node``) -> level, from the levels file."""
    data = load_yaml(Path(path or levels_path()), "test levels file") or {}
    out: dict[str, str] = {}
    for level in LEVELS:
        for module in data.get(level) or []:
            if module in out:
                raise CxrDeviceError(f"{path or levels_path()}: {module} is listed under two levels")
            out[str(module)] = level
    unknown = set(data) - set(LEVELS)
    if unknown:
        raise CxrDeviceError(f"{path or levels_path()}: unknown level(s) {', '.join(sorted(unknown))}; "
                             f"list modules under {', '.join(LEVELS)}")
    return out


def level_problems(tests_dir: str | Path, path: str | Path | None = None) -> list[str]:
    """Modules the levels file names that are not test modules of ``tests_dir`` (a stale entry)."""
    present = {p.stem for p in Path(tests_dir).glob("test_*.py")}
    return [f"{module} ({level}) is not a test module of {tests_dir}" for module, level in sorted(load_levels(path).items())
            if module not in present]


def _tool_version(command: list[str] | None, name: str) -> str:
    if command is None:
        if shutil.which(name) is None:
            return "not installed"
        try:  # dicom3tools prints no version: the Debian package's, when there is one
            done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dicom3tools"], capture_output=True,
                                  text=True, timeout=10, check=False)
            return f"dicom3tools {done.stdout.strip()} (Debian package)" if done.returncode == 0 and done.stdout.strip() \
                else "installed (the tool reports no version)"
        except (OSError, subprocess.SubprocessError):
            return "installed (the tool reports no version)"
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return f"installed (version not read: {type(err).__name__})"
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[0][:120] if lines else "installed (the tool reports no version)"


def tested_environment(repo: str | Path) -> dict[str, str]:
    """What the test run records about itself (property name -> text): the package version, the
    git commit of ``repo`` and whether tracked files were modified, Python, the test libraries'
    and the external tools' versions."""
    out = {f"{PREFIX}package-version": _version("cxr-device"), f"{PREFIX}python": platform.python_version()}
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        out[f"{PREFIX}git-commit"] = commit
        out[f"{PREFIX}git-dirty"] = "yes" if dirty else "no"
    except (OSError, subprocess.SubprocessError):
        out[f"{PREFIX}git-commit"] = "not a git repository"
    for name in TEST_LIBRARIES:
        out[f"{PREFIX}library:{name}"] = _version(name)
    for name, command in TOOLS:
        out[f"{PREFIX}tool:{name}"] = _tool_version(command, name)
    return out


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def suite_properties(junit: str | Path) -> dict[str, str]:
    """The test suite's properties in a JUnit report (those this module's prefix names)."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError) as err:
        raise CxrDeviceError(f"{junit}: not a readable JUnit XML report ({err})") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {}
    for suite in suites:
        for props in suite.findall("properties"):
            for p in props.findall("property"):
                if (p.get("name") or "").startswith(PREFIX):
                    out[p.get("name")] = p.get("value") or ""
    return out


def module_of(test: str) -> str:
    """``tests.test_node::test_x`` -> ``test_node``."""
    return test.split("::", 1)[0].rsplit(".", 1)[-1]


def testing_summary(junit: str | Path, manifest: dict | None = None, levels: dict[str, str] | None = None) -> dict:
    """Counts by level and by module (passed, failed, skipped, total), the modules counted as unit
    by default, and the tested version: ``{"levels", "modules", "unclassified", "total",
    "tested", "run", "same_commit"}``."""
    levels = load_levels() if levels is None else levels
    empty = {"passed": 0, "failed": 0, "skipped": 0, "total": 0}
    by_level = {level: dict(empty) for level in LEVELS}
    by_module: dict[str, dict] = {}
    for name, result, _ in junit_results(junit):
        module = module_of(name)
        level = levels.get(module, "unit")
        row = by_module.setdefault(module, {"module": module, "level": level, **empty})
        for counts in (row, by_level[level]):
            counts[result] += 1
            counts["total"] += 1
    total = {k: sum(c[k] for c in by_level.values()) for k in empty}
    tested = suite_properties(junit)
    commit = tested.get(f"{PREFIX}git-commit")
    run_commit = (manifest or {}).get("git_commit")
    return {"levels": by_level, "modules": [by_module[m] for m in sorted(by_module)],
            "unclassified": sorted(m for m in by_module if m not in levels), "total": total,
            "tested": {"package_version": tested.get(f"{PREFIX}package-version"), "git_commit": commit,
                       "git_dirty": tested.get(f"{PREFIX}git-dirty"), "python": tested.get(f"{PREFIX}python"),
                       "libraries": {k.split(":", 2)[2]: v for k, v in sorted(tested.items()) if ":library:" in k},
                       "tools": {k.split(":", 2)[2]: v for k, v in sorted(tested.items()) if ":tool:" in k}},
            "run": {"package_version": (manifest or {}).get("package_version"), "git_commit": run_commit,
                    "git_dirty": (manifest or {}).get("git_dirty")},
            "same_commit": None if not commit or not run_commit or commit == "not a git repository"
            else commit == run_commit}
