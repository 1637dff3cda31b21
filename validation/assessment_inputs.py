"""The labelled inputs of a standalone assessment, from any of four sources.

* ``cohort``: a cohort folder (``cohort.csv``) and one of its splits;
* ``folders``: a NORMAL/PNEUMONIA class-folder dataset, read as ``cohort --folders`` reads it;
* ``metadata``: NIH-format metadata with image folders, read as ``cohort --metadata`` reads it;
* ``dicom``: a folder of DICOM files and a labels CSV with the columns ``path,label`` (a path
  relative to the folder, or absolute; a label of 0 or 1).

Nothing vanishes: a label that matches no file, a file that matches no label, a label other
than 0/1, a path labelled twice (an exact duplicate: the file is scored once) or with
conflicting labels (the file is not scored: which label is true is not ours to guess), a
metadata row that fails validation, a file name that names no patient - each is an exclusion
with its reason and detail, counted in the assessment and making the exit code 1. One case is not an exclusion: NIH metadata describes 112,120 images and
a set holds the ones it holds, so a metadata row whose image is not under the image folders is
*outside the set* - counted and listed (``outside_set.csv``), as ``cohort`` reports
``no_image_file``, without making the exit code 1.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from cxr_device import exclusions as ex
from cxr_device.class_folders import read_class_folders
from cxr_device.cohort import read_cohort
from cxr_device.errors import CxrDeviceError, DatasetError
from cxr_device.findings import TARGET
from cxr_device.image_index import attach_paths, index_images
from cxr_device.nih_metadata import read_nih_metadata
from cxr_device.runtime.header_check import collect_paths
from cxr_device.synth_dicom import SYNTHETIC_COMMENT

LABEL_WITHOUT_FILE, FILE_WITHOUT_LABEL = "label_without_file", "file_without_label"
INVALID_LABEL, DUPLICATE_LABEL, CONFLICTING_LABEL = "invalid_label", "duplicate_label", "conflicting_label"
SOURCES = ("cohort", "folders", "metadata", "dicom")


@dataclass(frozen=True)
class LabelledInput:
    """One image to score and its reference label."""

    key: str  # how the image is named in the outputs: image id or path relative to the source
    path: Path
    label: int
    patient: str  # a pseudonymous patient key ("" when the source records none: the image is its own unit)
    age_years: float | None = None
    sex: str = ""
    view: str = ""


@dataclass
class InputSet:
    """What an assessment scores, and what it could not use, with reasons."""

    kind: str
    description: dict
    items: list[LabelledInput]
    excluded: list[dict] = field(default_factory=list)  # {"key", "reason", "detail"}
    outside: list[dict] = field(default_factory=list)  # metadata rows naming images the set does not hold

    @property
    def dicom(self) -> bool:
        return self.kind == "dicom"


def _from_frame(frame: pd.DataFrame) -> list[LabelledInput]:
    def value(row, column, default):
        v = row.get(column, default)
        return default if v is None or (isinstance(v, float) and np.isnan(v)) or pd.isna(v) else v

    return [LabelledInput(str(row["image_id"]), Path(row["path"]), int(row[TARGET]), str(row["patient_id"]),
                          value(row, "age_years", None), str(value(row, "sex", "")), str(value(row, "view", "")))
            for row in frame.to_dict("records")]


def _from_log(log: ex.ExclusionLog) -> list[dict]:
    frame = log.frame()
    return [{"key": str(r["image_id"]), "reason": str(r["reason"]), "detail": str(r["detail"])}
            for r in frame.to_dict("records")]


def from_cohort(cohort_dir: str | Path, split: str = "test") -> InputSet:
    """The images of one split of a cohort folder (its own exclusions were made when it was built)."""
    frame, summary = read_cohort(cohort_dir)
    part = frame[frame["split"] == split]
    if part.empty:
        splits = ", ".join(sorted(frame["split"].unique()))
        raise DatasetError(f"{cohort_dir}: the cohort has no images in split {split!r} (splits: {splits})")
    return InputSet("cohort", {"cohort": str(cohort_dir), "split": split, "dataset": summary.get("dataset"),
                               "synthetic": bool(summary.get("synthetic"))}, _from_frame(part))


def from_folders(root: str | Path) -> InputSet:
    """A NORMAL/PNEUMONIA class-folder dataset; every image is assessed (no split)."""
    table = read_class_folders(root)
    return InputSet("folders", {"folders": str(root), "dataset": "pediatric", "listing_sha256":
                                table.source.get("listing_sha256")}, _from_frame(table.frame), _from_log(table.exclusions))


def from_metadata(metadata: str | Path, images: list[str | Path]) -> InputSet:
    """NIH-format metadata and its image folders; rows without a file and files without a row
    are exclusions."""
    table = read_nih_metadata(metadata)
    index = index_images(list(images))
    frame, report = attach_paths(table.frame, index, table.exclusions)
    logged = _from_log(table.exclusions)
    excluded = [e for e in logged if e["reason"] != ex.NO_IMAGE_FILE]
    excluded += [{"key": path, "reason": FILE_WITHOUT_LABEL, "detail": f"{path}: no metadata row names this image"}
                 for path in report["images_without_row"]]
    return InputSet("metadata", {"metadata": str(metadata), "images": [str(i) for i in images], "dataset": "nih"},
                    _from_frame(frame), excluded, [e for e in logged if e["reason"] == ex.NO_IMAGE_FILE])


def from_dicom_labels(dicom_dir: str | Path, labels_csv: str | Path) -> InputSet:
    """DICOM files under ``dicom_dir`` matched to the labels CSV (``path,label``).

    Rows naming one file (by its resolved path) are read together: when they agree, the first is
    used and each further row is a ``duplicate_label`` exclusion; when they disagree, the file is
    not scored and every one of its rows is a ``conflicting_label`` exclusion naming all of them.
    Each patient is the file's PatientID (with IssuerOfPatientID), hashed (:func:`header_facts`).
    """
    folder, labels_path = Path(dicom_dir), Path(labels_csv)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: DICOM folder not found (given with --dicom)")
    files = {p.resolve(): p for p in collect_paths([folder])}
    excluded: list[tuple[int, dict]] = []  # (line, exclusion): listed in the order of the CSV
    groups: dict[Path, list[tuple[int, str, str]]] = {}  # resolved path -> its rows (line, path, label)
    for line, raw_path, raw_label in _read_labels(labels_path):
        if raw_label.strip() not in ("0", "1"):
            excluded.append((line, {"key": raw_path, "reason": INVALID_LABEL,
                                    "detail": f"{labels_path} line {line}: label {raw_label!r} is not 0 or 1"}))
            continue
        path = Path(raw_path) if Path(raw_path).is_absolute() else folder / raw_path
        groups.setdefault(path.resolve(), []).append((line, raw_path, raw_label.strip()))
    items, n_synthetic = [], 0
    for resolved, rows in groups.items():
        problems = _label_row_problems(rows, labels_path)
        excluded += problems
        if len(problems) == len(rows):  # conflicting: no row is used
            continue
        line, raw_path, label = rows[0]
        if resolved not in files:
            path = Path(raw_path) if Path(raw_path).is_absolute() else folder / raw_path
            where = f"{labels_path} line {line}"
            excluded.append((line, {"key": raw_path, "reason": LABEL_WITHOUT_FILE,
                                    "detail": f"{where}: no file {path} under {folder}" if not path.exists()
                                    else f"{where}: {path} is not under {folder}"}))
            continue
        path = files[resolved]
        patient, synthetic = header_facts(path)
        n_synthetic += synthetic
        items.append(LabelledInput(_relative(path, folder), path, int(label), patient))
    listed = [entry for _, entry in sorted(excluded, key=lambda pair: pair[0])]
    for resolved, path in sorted(files.items(), key=lambda kv: str(kv[1])):
        if resolved not in groups:
            listed.append({"key": _relative(path, folder), "reason": FILE_WITHOUT_LABEL,
                           "detail": f"{path}: no row of {labels_path} labels this file"})
    return InputSet("dicom", {"dicom": str(folder), "labels": str(labels_path),
                              "labels_sha256": hashlib.sha256(labels_path.read_bytes()).hexdigest(),
                              "n_synthetic_dicom": n_synthetic},
                    items, listed)


def _label_row_problems(rows: list[tuple[int, str, str]], labels_path: Path) -> list[tuple[int, dict]]:
    """The exclusions among the rows that label one file: every row when their labels disagree
    (``conflicting_label``), else every row after the first (``duplicate_label``)."""
    first_line, _, first_label = rows[0]
    if len({label for _, _, label in rows}) > 1:
        said = ", ".join(f"line {line}: {label}" for line, _, label in rows)
        return [(line, {"key": raw, "reason": CONFLICTING_LABEL,
                        "detail": f"{labels_path} line {line}: {raw} has conflicting labels ({said}); the file is not "
                                  "scored until the labels CSV gives it one label"}) for line, raw, _ in rows]
    return [(line, {"key": raw, "reason": DUPLICATE_LABEL,
                    "detail": f"{labels_path} line {line}: {raw} is labelled {label} again, an exact duplicate of "
                              f"line {first_line}"}) for line, raw, label in rows[1:]]


def header_facts(path: Path) -> tuple[str, bool]:
    """(patient, synthetic) of a DICOM file: the patient as a pseudonym - sha256 of
    IssuerOfPatientID and PatientID (hex), so no identifier is ever written; "" when the header
    names no patient or cannot be read - and whether cxr-device wrote it as a synthetic phantom
    (its ImageComments), so that the documents never present the device's own files as a site's."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["PatientID", "IssuerOfPatientID", "ImageComments"])
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the scoring, not here
        return "", False
    synthetic = str(ds.get("ImageComments", "") or "") == SYNTHETIC_COMMENT
    patient = str(ds.get("PatientID", "") or "").strip()
    if not patient:
        return "", synthetic
    issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
    return hashlib.sha256(json.dumps([issuer, patient]).encode()).hexdigest(), synthetic


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _read_labels(path: Path) -> list[tuple[int, str, str]]:
    """(line, path, label) of every data row; the header must be exactly ``path,label``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            if header != ["path", "label"]:
                raise CxrDeviceError(f"{path}: the labels CSV needs the header 'path,label' "
                                     f"(found {','.join(header) or 'nothing'})")
            rows = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != 2:
                    raise CxrDeviceError(f"{path} line {reader.line_num}: expected 2 fields (path,label), "
                                         f"found {len(row)}")
                rows.append((reader.line_num, row[0].strip(), row[1]))
    except FileNotFoundError:
        raise CxrDeviceError(f"{path}: labels CSV not found (given with --labels)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CxrDeviceError(f"{path}: cannot read the labels CSV ({err})") from None
    if not rows:
        raise CxrDeviceError(f"{path}: the labels CSV has a header but no rows")
    return rows


def input_set(source: dict) -> InputSet:
    """The input set named by a mapping with the keys of ``assess``'s options (``cohort`` and
    ``split``, ``folders``, ``metadata`` and ``images``, ``dicom`` and ``labels``): exactly one
    source, its companion given; a usage error otherwise."""
    chosen = [name for name in SOURCES if source.get(name)]
    if len(chosen) != 1:
        raise CxrDeviceError("give exactly one of --cohort DIR, --folders ROOT, --metadata CSV (with --images) or "
                             f"--dicom DIR (with --labels); got {', '.join('--' + c for c in chosen) or 'none'}")
    if bool(source.get("images")) != bool(source.get("metadata")):
        raise CxrDeviceError("--metadata and --images go together")
    if bool(source.get("labels")) != bool(source.get("dicom")):
        raise CxrDeviceError("--dicom and --labels go together")
    kind = chosen[0]
    if kind == "cohort":
        return from_cohort(source["cohort"], source.get("split") or "test")
    if kind == "folders":
        return from_folders(source["folders"])
    if kind == "metadata":
        return from_metadata(source["metadata"], source["images"])
    return from_dicom_labels(source["dicom"], source["labels"])
