"""Check DICOM files against a rule set: one result per input file, never an exception.

Statuses: ``pass`` (no error findings; warnings allowed), ``fail`` (at least one error
finding), ``unreadable`` (not a DICOM, empty, truncated, or - with ``decode`` - pixel data that
does not decode; the reason names the problem). Results are sorted by path whatever the
number of worker processes.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from cxr_device.dicom_pixels import DEFAULT_MAX_PIXELS, DicomReadError, read_dicom_pixels, read_header
from cxr_device.errors import CxrDeviceError

from .dicom_rules import ERROR, WARNING, Finding, RuleSet

PASS, FAIL, UNREADABLE = "pass", "fail", "unreadable"
PHI_FIELDS = {"patient_name": "PatientName", "patient_id": "PatientID", "patient_birth_date": "PatientBirthDate"}


@dataclass
class FileResult:
    """What the checker concluded about one file."""

    path: str
    status: str
    sop_instance_uid: str = ""
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""  # why the file is unreadable
    phi: dict[str, str] = field(default_factory=dict)  # only with show_phi

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def as_dict(self) -> dict:
        out = asdict(self)
        if not self.phi:
            out.pop("phi")
        return out


def collect_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named directly plus every non-hidden file under named folders (recursive), sorted,
    each once. A named path that does not exist is kept, so it is reported as unreadable."""
    found: set[Path] = set()
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                found.update(Path(dirpath, n) for n in filenames if not n.startswith("."))
        else:
            found.add(item)
    return sorted(found)


def check_file(path: str | Path, rules: RuleSet, decode: bool = False, show_phi: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> FileResult:
    """Check one file's header (and, with ``decode``, its pixel data). Never raises."""
    path = Path(path)
    try:
        ds = read_header(path)
    except DicomReadError as err:
        return FileResult(str(path), UNREADABLE, reason=_without_path(err, path))
    except Exception as err:  # pydicom may fail in ways its docs do not list; report, never crash
        return FileResult(str(path), UNREADABLE, reason=f"unexpected error reading header: {type(err).__name__}: {err}")
    findings = rules.evaluate(ds, show_phi)
    result = FileResult(str(path), FAIL if any(f.severity == ERROR for f in findings) else PASS,
                        sop_instance_uid=str(ds.get("SOPInstanceUID", "")), findings=findings)
    if show_phi:
        result.phi = {name: str(ds.get(keyword, "")) for name, keyword in PHI_FIELDS.items()}
    if decode:
        try:
            read_dicom_pixels(path, max_pixels)
        except CxrDeviceError as err:
            result.status, result.reason = UNREADABLE, _without_path(err, path)
        except Exception as err:
            result.status, result.reason = UNREADABLE, f"pixel data: {type(err).__name__}: {err}"
    return result


def check_paths(paths: list[Path], rules: RuleSet, workers: int = 1, decode: bool = False, show_phi: bool = False,
                progress: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[FileResult]:
    """Check every path, in parallel over ``workers`` processes; results sorted by path."""
    check = partial(check_file, rules=rules, decode=decode, show_phi=show_phi, max_pixels=max_pixels)
    bar = partial(tqdm, total=len(paths), desc="check-dicom", unit="file", disable=not progress)
    if workers <= 1 or len(paths) < 2 * workers:
        results = list(bar(map(check, paths)))
    else:
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(bar(pool.map(check, paths, chunksize=chunk)))
    return sorted(results, key=lambda r: r.path)


def summarise(results: list[FileResult]) -> dict:
    """Counts by status, warnings, and the findings most often seen (by rule)."""
    status = Counter(r.status for r in results)
    by_rule = Counter(f.rule for r in results for f in r.findings)
    return {
        "files": len(results),
        PASS: status.get(PASS, 0),
        FAIL: status.get(FAIL, 0),
        UNREADABLE: status.get(UNREADABLE, 0),
        "warnings": sum(len(r.warnings) for r in results),
        "findings_by_rule": dict(sorted(by_rule.items())),
    }


def _without_path(err: Exception, path: Path) -> str:
    """Messages carry the path already as a separate field; keep the reason itself."""
    text = str(err)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text

