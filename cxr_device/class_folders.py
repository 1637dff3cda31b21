"""Read class-folder datasets (the pediatric Kermany set) into the same table as NIH.

Accepted layouts (folder names case-insensitive)::

    ROOT/NORMAL/*.jpeg, ROOT/PNEUMONIA/*.jpeg
    ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg      (the folder split is kept in source_split)

Patients come from the file names: ``person123_bacteria_456.jpeg`` -> ``person-123`` (subtype
bacteria), ``IM-0115-0001.jpeg`` -> ``im-0115``, ``NORMAL2-IM-1427-0001.jpeg`` -> ``normal2-1427``.
The prefixes keep the numbering schemes apart, since their numbers are independent.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from . import exclusions as ex
from .errors import DatasetError
from .findings import TARGET
from .hashing import sha256_listing
from .image_index import IMAGE_SUFFIXES
from .nih_metadata import CORE_COLUMNS, MetadataTable

CLASSES = {"normal": 0, "pneumonia": 1}
SPLIT_FOLDERS = ("train", "val", "test")
_PATTERNS = (
    (re.compile(r"^person(\d+)_(bacteria|virus)_\d+(?:_\d+)*$", re.I), lambda m: (f"person-{int(m[1])}", m[2].lower())),
    (re.compile(r"^normal(\d*)-im-(\d+)(?:-\d+)+$", re.I), lambda m: (f"normal{m[1]}-{m[2]}", "normal")),
    (re.compile(r"^im-(\d+)(?:-\d+)+$", re.I), lambda m: (f"im-{m[1]}", "normal")),
)


def parse_patient(stem: str) -> tuple[str, str] | None:
    """``"person123_bacteria_456"`` -> ``("person-123", "bacteria")``; None if unrecognised."""
    for pattern, make in _PATTERNS:
        match = pattern.match(stem)
        if match:
            return make(match)
    return None


def _children(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir()}


def _class_dirs(root: Path) -> list[tuple[str, str, Path]]:
    """(source_split, class, folder) triples for either accepted layout."""
    top = _children(root)
    if set(CLASSES) <= set(top):
        return [("", c, top[c]) for c in CLASSES]
    found = []
    for split in SPLIT_FOLDERS:
        if split in top:
            sub = _children(top[split])
            missing = [c.upper() for c in CLASSES if c not in sub]
            if missing:
                raise DatasetError(f"{top[split]}: missing class folder(s) {', '.join(missing)}")
            found += [(split, c, sub[c]) for c in CLASSES]
    if not found:
        raise DatasetError(
            f"{root}: expected class folders NORMAL and PNEUMONIA, or train/val/test folders "
            f"holding them; found {sorted(top) or 'no folders'}"
        )
    return found


def read_class_folders(root: str | Path) -> MetadataTable:
    """Build the cohort table of a class-folder dataset; unrecognised file names are excluded."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (given with --folders)")
    records, bad, listing, ignored = [], [], [], []
    class_dirs = _class_dirs(root)
    for split, label, folder in class_dirs:
        for file in sorted(folder.iterdir()):
            if file.name.startswith(".") or not file.is_file():
                continue
            if not file.name.lower().endswith(IMAGE_SUFFIXES):
                ignored.append(str(file))
                continue
            relative = file.relative_to(root).as_posix()
            listing.append((relative, file.stat().st_size))
            parsed = parse_patient(file.stem)
            row = {"image_id": relative, "path": str(file.resolve()), "source_split": split}
            if parsed is None:
                bad.append({**row, "detail": f"{file}: file name does not name a patient "
                            "(expected personN_bacteria|virus_M, IM-NNNN-MMMM or NORMAL2-IM-NNNN-MMMM)"})
                continue
            patient, subtype = parsed
            records.append({**row, "patient_id": patient, "subtype": subtype, TARGET: CLASSES[label]})
    if not records and not bad:
        folders = ", ".join(str(folder) for _, _, folder in class_dirs)
        raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the class folders ({folders})"
                           f"{f'; {len(ignored)} other file(s) were ignored' if ignored else ''}; "
                           "check that this is the right folder and that the images were copied")
    log = ex.ExclusionLog()
    if bad:
        frame_bad = pd.DataFrame(bad)
        log.add(frame_bad, ex.UNRECOGNISED_FILE_NAME, frame_bad["detail"])
    frame = pd.DataFrame.from_records(records, columns=["image_id", "path", "source_split", "patient_id", "subtype", TARGET])
    frame = frame.assign(
        dataset="pediatric",
        follow_up=pd.array([pd.NA] * len(frame), dtype="Int64"),
        age_years=float("nan"),
        sex="",
        view="",
        finding_labels=frame[TARGET].map({0: "No Finding", 1: "Pneumonia"}),
        no_finding=1 - frame[TARGET],
    )
    frame[TARGET] = frame[TARGET].astype("int8")
    frame["no_finding"] = frame["no_finding"].astype("int8")
    frame = frame[CORE_COLUMNS + ["no_finding", "subtype", "source_split"]]
    frame = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    source = {
        "kind": "class_folders",
        "path": str(root),
        "layout": "split folders" if frame["source_split"].ne("").any() else "class folders",
        "rows_read": len(records) + len(bad),
        "listing_sha256": sha256_listing(listing),
        "ignored_files": ignored,
    }
    return MetadataTable(frame=frame, exclusions=log, source=source)
