"""No image of an external development set may reach the run's training, validation or test splits.

Names are not enough: the public pediatric set numbers its patients independently in each of
its official folders (``person1`` of the training folder is not ``person1`` of the test folder),
and a file can be copied under another name. So images are compared by **file identity**: the
sha256 of their decoded pixels (the one image loader's output, shape included), which is the
same for the same image whatever its file name or container. :func:`check_disjoint` decodes
both sides (in parallel), and the run refuses to train when any development image is in the
cohort; the names the two sides share are counted and reported as information, never as proof.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr_device.class_folders import parse_patient
from cxr_device.errors import CxrDeviceError
from cxr_device.imageio import load_image

LEAKAGE_JSON = "leakage.json"


class LeakageError(CxrDeviceError):
    """An image of a development set is in the cohort the device is trained and evaluated on."""


def pixel_digest(path: str | Path) -> str | None:
    """sha256 of the decoded pixels (float32, with the shape) of an image file; None when it
    cannot be decoded (it is then counted, never silently taken as different)."""
    try:
        pixels = np.ascontiguousarray(load_image(path), dtype=np.float32)
    except CxrDeviceError:
        return None
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def _digests(paths: list[str], workers: int) -> list[str | None]:
    if workers <= 1 or len(paths) < 64:
        return [pixel_digest(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(pixel_digest, paths, chunksize=64))


@dataclass
class LeakageReport:
    """What the comparison found."""

    n_development: int
    n_cohort: int
    undecodable: list[str] = field(default_factory=list)
    shared_images: list[dict] = field(default_factory=list)  # development file, cohort image, its split
    shared_patient_names: int = 0  # patient names present on both sides (information only, see the module notes)

    def as_dict(self) -> dict:
        return {"n_development_images": self.n_development, "n_cohort_images": self.n_cohort,
                "method": "sha256 of the decoded pixels (file identity), whatever the file name",
                "undecodable": self.undecodable, "shared_images": self.shared_images,
                "shared_patient_names": self.shared_patient_names,
                "note": "patient names are not unique across the public set's official folders: shared names are "
                        "counted as information, and images are compared by their pixels"}


def check_disjoint(cohort: Iterable[dict], development: Iterable[tuple[str, str]], workers: int = 2,
                   patient_of=None) -> LeakageReport:
    """Compare the cohort's images (dicts with ``image_id``, ``path``, ``split``, ``patient_id``)
    with the development sets' files ((set name, path)); the report of what they share."""
    cohort, development = list(cohort), list(development)
    cohort_digests = _digests([r["path"] for r in cohort], workers)
    dev_digests = _digests([p for _, p in development], workers)
    by_digest = {}
    for row, digest in zip(cohort, cohort_digests):
        if digest is not None:
            by_digest.setdefault(digest, row)
    report = LeakageReport(len(development), len(cohort))
    report.undecodable = [p for (_, p), d in zip(development, dev_digests) if d is None]
    report.undecodable += [r["path"] for r, d in zip(cohort, cohort_digests) if d is None]
    for (name, path), digest in zip(development, dev_digests):
        row = by_digest.get(digest) if digest else None
        if row is not None:
            report.shared_images.append({"development_set": name, "file": path, "cohort_image": row["image_id"],
                                         "split": row["split"]})
    if patient_of is not None:
        names = {str(r["patient_id"]) for r in cohort}
        report.shared_patient_names = len({patient_of(Path(p).name) for _, p in development} & names)
    return report


def write_report(report: LeakageReport, out: Path) -> Path:
    """``out/leakage.json``; raise :class:`LeakageError` naming the shared images when there are any."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LEAKAGE_JSON
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if report.shared_images:
        first = report.shared_images[0]
        raise LeakageError(f"{len(report.shared_images)} image(s) of the development sets are in the cohort (same "
                           f"pixels), e.g. {first['file']} is cohort image {first['cohort_image']} ({first['split']} "
                           f"split); listed in {path}. Remove them from one side: a set decisions are made on must "
                           "not be trained or evaluated on")
    return path


def pediatric_patient(name: str) -> str:
    """The patient a pediatric-set file name gives, as the cohort names it (``person-123``, ``im-0115``)."""
    parsed = parse_patient(Path(name).stem)
    return parsed[0] if parsed else name
