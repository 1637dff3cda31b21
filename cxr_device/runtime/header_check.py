"""The device's per-input header check: one DICOM against a rule set, one result, never an exception.

Statuses: ``pass`` (no error findings; warnings allowed), ``fail`` (at least one error
finding), ``unreadable`` (not a DICOM, empty, truncated, not a regular file, or - with
``decode`` - pixel data that does not decode or cannot be trusted; the reason names the
problem). A dataset without Pixel Data always fails: there is no image to read.

``predict``, ``assess`` and the DICOM node call :func:`check_dataset` on the dataset they then
decode (one parse per input); ``check-dicom`` calls :func:`check_file`, which reads only the
attributes the rules look at.

Header-only, :func:`check_file` uses the fast reader of :mod:`.header_scan` (only the bytes of
the attributes the rules name, from the first kilobytes of the file) and falls back to the full
parse whenever that reader cannot vouch for a file; both give the same result for every file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from ..dicom_pixels import (
    DEFAULT_MAX_PIXELS,
    DicomReadError,
    dataset_pixels,
    read_header,
)
from ..errors import CxrDeviceError
from .header_scan import scan_header, wanted_tags
from .input_rules import ERROR, WARNING, Finding, RuleSet

PASS, FAIL, UNREADABLE = "pass", "fail", "unreadable"
PHI_FIELDS = {"patient_name": "PatientName", "patient_id": "PatientID", "patient_birth_date": "PatientBirthDate"}
#: The finding every image input must not have: a DICOM with no pixels is not an image.
NO_PIXEL_DATA = Finding("pixel-data", ERROR, "PixelData", None, "present",
                        "Pixel Data (7FE0,0010) is missing: the file holds no image to read")


@dataclass
class FileResult:
    """What the checker concluded about one input."""

    path: str
    status: str
    sop_instance_uid: str = ""
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""  # why the input is unreadable
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
    """Files named directly plus every non-hidden entry under named folders (recursive), sorted,
    each once. Folders are walked without following links. Entries that are not regular files
    (pipes, devices, broken links) and named paths that do not exist are kept, so that they are
    reported as unreadable instead of vanishing; nothing here opens a file."""
    found: set[Path] = set()
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found.update(Path(dirpath, n) for n in filenames if not n.startswith("."))
        else:
            found.add(item)
    return sorted(found)


def check_dataset(ds: Dataset, rules: RuleSet, label: str, show_phi: bool = False) -> FileResult:
    """Evaluate ``rules`` (and the Pixel Data presence) on a parsed dataset. Never raises."""
    return _check(ds, rules, label, show_phi, "PixelData" in ds)


def _check(ds: Dataset, rules: RuleSet, label: str, show_phi: bool, has_pixel_data: bool) -> FileResult:
    findings = rules.evaluate(ds, show_phi)
    if not has_pixel_data:
        findings.append(NO_PIXEL_DATA)
    result = FileResult(label, FAIL if any(f.severity == ERROR for f in findings) else PASS,
                        sop_instance_uid=_text(ds, "SOPInstanceUID"), findings=findings)
    if show_phi:
        result.phi = {name: _text(ds, keyword) for name, keyword in PHI_FIELDS.items()}
    return result


def check_file(path: str | Path, rules: RuleSet, decode: bool = False, show_phi: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> FileResult:
    """Check one file's header (and, with ``decode``, its pixel data). Never raises.

    Header-only, a plainly encoded file is read by :func:`scan_header`; every other file, and
    every file with ``decode``, by the full parse (:func:`check_file_full`). Both give the same
    result for the same file."""
    if not decode:
        wanted = wanted_tags(rules.tags, show_phi)
        if wanted is not None:
            label = str(Path(path))
            scanned = scan_header(label, wanted)  # None: the full parse decides (every failure, too)
            if scanned is not None:
                return _check(scanned.dataset, rules, label, show_phi, scanned.pixel_data is not None)
    return check_file_full(path, rules, decode, show_phi, max_pixels)


def check_file_full(path: str | Path, rules: RuleSet, decode: bool = False, show_phi: bool = False,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> FileResult:
    """:func:`check_file` through the full parse (:func:`~cxr_device.dicom_pixels.read_header`)
    only: what decides every file the fast reader gives up on, and its reference in the tests."""
    path = Path(path)
    try:
        ds = read_header(path)
    except DicomReadError as err:
        return FileResult(str(path), UNREADABLE, reason=without_label(err, str(path)))
    except Exception as err:  # pydicom may fail in ways its docs do not list; report, never crash
        return FileResult(str(path), UNREADABLE, reason=f"unexpected error reading header: {type(err).__name__}: {err}")
    result = check_dataset(ds, rules, str(path), show_phi)
    if decode and "PixelData" in ds:
        try:
            dataset_pixels(ds, str(path), max_pixels)  # the deferred Pixel Data of the same parse
        except CxrDeviceError as err:
            result.status, result.reason = UNREADABLE, without_label(err, str(path))
        except Exception as err:
            result.status, result.reason = UNREADABLE, f"pixel data: {type(err).__name__}: {err}"
    return result


def without_label(err: Exception, label: str) -> str:
    """Messages carry the input's name already as a separate field; keep the reason itself."""
    text = str(err)
    prefix = f"{label}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _text(ds: Dataset, keyword: str) -> str:
    """An attribute as report text ('' when absent)."""
    try:
        return str(ds.get(keyword, ""))
    except Exception:  # a value pydicom cannot read or convert is reported, never raised
        return "?"
