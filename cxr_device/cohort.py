"""Build a cohort: ingest -> resolve images -> filter -> cap -> split by patient -> rebalance.

The output folder is the contract with the later steps::

    cohort.csv        one row per image (split in {train, val, test}), sorted by image_id
    summary.json      counts, prevalence, demographics per split, exclusions by reason,
                      the patient-disjointness proof, settings, seed, sha256 of every input
    exclusions.csv    every excluded row with its source line, reason and detail
    images_without_row.txt   image files that no metadata row names (empty when there are none)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pydantic.dataclasses
from pydantic import Field

from . import exclusions as ex
from .class_folders import read_class_folders
from .errors import CxrDeviceError, DatasetError
from .filters import Filters, apply_filters
from .findings import TARGET
from .hashing import sha256_file
from .image_index import attach_paths, index_images
from .nih_metadata import MetadataTable, read_nih_metadata
from .provenance import SYNTHETIC_MARKER, producer
from .run_layout import COHORT_CSV, EXCLUSIONS_CSV, ORPHANS_TXT
from .run_layout import COHORT_SUMMARY as SUMMARY_JSON
from .splits import (
    SPLITS,
    assert_patient_disjoint,
    balance_train,
    check_fractions,
    folder_split,
    official_split,
    split_by_patient,
    subsample_val_prevalence,
)
from .validated import RANGE, SETTINGS, Fraction, Seed


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class CohortSettings:
    """Everything that decides a cohort; recorded verbatim in ``summary.json``."""

    metadata: str | None = None
    folders: str | None = None
    images: tuple[str, ...] = ()
    metadata_only: bool = False
    filters: Filters = Filters()
    split: str = "patient"  # "patient" or "official" (NIH lists / the dataset's own folders)
    val_fraction: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.15
    test_fraction: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.15
    train_val_list: str | None = None
    test_list: str | None = None
    class_cap: Annotated[int, Field(ge=1, le=100_000_000), RANGE] | None = None
    balance_train: Annotated[float, Field(gt=0, le=10_000), RANGE] | None = None  # negatives per training positive
    val_prevalence: Fraction | None = None
    seed: Seed = 0

    def validate(self) -> None:
        """Fail early, naming the flag, for settings that cannot work together."""
        if (self.metadata is None) == (self.folders is None):
            raise CxrDeviceError("give exactly one of --metadata CSV (NIH) or --folders ROOT (class folders)")
        if self.folders and (self.images or self.metadata_only):
            raise CxrDeviceError("--images/--metadata-only apply to --metadata; class folders hold their images")
        if self.metadata and not self.metadata_only and not self.images:
            raise CxrDeviceError("give --images DIR (one or more) to find the image files, or --metadata-only")
        if self.split not in ("patient", "official"):
            raise CxrDeviceError(f"--split must be 'patient' or 'official', got {self.split!r}")
        if self.metadata and self.split == "official" and not (self.train_val_list and self.test_list):
            raise CxrDeviceError("--split official with NIH metadata needs --train-val-list and --test-list")
        if self.split == "patient" and (self.train_val_list or self.test_list):
            raise CxrDeviceError("--train-val-list/--test-list are used only with --split official")
        check_fractions(self.val_fraction, 0.0 if self.split == "official" else self.test_fraction)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["images"] = list(self.images)
        out["filters"] = self.filters.as_dict()
        return out


@dataclass
class Cohort:
    """The split table, every excluded row, and the summary that describes both."""

    frame: pd.DataFrame
    exclusions: ex.ExclusionLog
    summary: dict
    images_without_row: list[str]

    @property
    def n_invalid(self) -> int:
        """Rows excluded because the input was wrong; non-zero makes the CLI exit 1."""
        return self.exclusions.n_invalid()


def build_cohort(settings: CohortSettings) -> Cohort:
    """Run every cohort stage in order; deterministic for the same inputs and settings."""
    settings.validate()
    table = read_nih_metadata(settings.metadata) if settings.metadata else read_class_folders(settings.folders)
    log = table.exclusions
    frame = table.frame
    image_report: dict = {}
    orphans: list[str] = []
    if settings.metadata and not settings.metadata_only:
        index = index_images(list(settings.images))
        frame, image_report = attach_paths(frame, index, log)
        orphans = image_report.pop("images_without_row")
        image_report["roots"] = index.roots

    frame = apply_filters(frame, settings.filters, log)
    if settings.class_cap:
        frame = _cap_classes(frame, settings.class_cap, settings.seed, log)
    frame = _split(frame, settings, log)
    if settings.balance_train:
        frame = balance_train(frame, settings.balance_train, settings.seed, log)
    if settings.val_prevalence:
        frame = subsample_val_prevalence(frame, settings.val_prevalence, settings.seed, log)
    proof = assert_patient_disjoint(frame)
    frame = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    summary = _summary(frame, table, settings, log, proof, image_report)
    return Cohort(frame=frame, exclusions=log, summary=summary, images_without_row=orphans)


def _split(frame: pd.DataFrame, settings: CohortSettings, log: ex.ExclusionLog) -> pd.DataFrame:
    if frame.empty:
        counts = ", ".join(f"{reason} {n:,}" for reason, n in log.counts().items()) or "none recorded"
        source = settings.metadata or settings.folders
        raise DatasetError(f"{source}: no images are left after validation and filters (exclusions: {counts}); "
                           "check the file, the image folders and the filters")
    if settings.split == "patient":
        split = split_by_patient(frame["patient_id"], frame[TARGET], settings.val_fraction,
                                 settings.test_fraction, settings.seed)
        return frame.assign(split=split)
    if settings.folders:
        return folder_split(frame)
    return official_split(frame, _read_id_list(settings.train_val_list), _read_id_list(settings.test_list),
                          settings.val_fraction, settings.seed, log)


def _read_id_list(path: str) -> set[str]:
    try:
        return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    except OSError as err:
        raise DatasetError(f"{path}: cannot read split list: {err.strerror}") from None


def _cap_classes(frame: pd.DataFrame, cap: int, seed: int, log: ex.ExclusionLog) -> pd.DataFrame:
    """Keep at most ``cap`` images per class, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    for label in (1, 0):
        members = frame.index[frame[TARGET] == label]
        if len(members) > cap:
            drop = members[np.sort(rng.permutation(len(members))[cap:])]
            log.add(frame.loc[drop], ex.CLASS_CAP, f"beyond --class-cap {cap} for class {label}")
            frame = frame.drop(index=drop)
    return frame


def _describe(rows: pd.DataFrame) -> dict:
    """Counts, prevalence and demographics of a set of rows."""
    n_pos = int(rows[TARGET].sum())
    ages = rows["age_years"].dropna()
    return {
        "n_images": int(len(rows)),
        "n_patients": int(rows["patient_id"].nunique()),
        "n_positive": n_pos,
        "prevalence": round(n_pos / len(rows), 6) if len(rows) else None,
        "age": {
            "n": int(len(ages)),
            "mean": round(float(ages.mean()), 3) if len(ages) else None,
            "sd": round(float(ages.std()), 3) if len(ages) > 1 else None,
            "min": float(ages.min()) if len(ages) else None,
            "max": float(ages.max()) if len(ages) else None,
        },
        "sex": _counts(rows["sex"]),
        "view": _counts(rows["view"]),
    }


def _counts(values: pd.Series) -> dict[str, int]:
    values = values.fillna("").replace("", "unknown")
    return {str(k): int(v) for k, v in sorted(values.value_counts().items())}


def _input_hashes(settings: CohortSettings, table: MetadataTable) -> dict:
    files = [p for p in (settings.metadata, settings.train_val_list, settings.test_list) if p]
    inputs = {str(p): {"sha256": sha256_file(p)} for p in files}
    if settings.folders:
        inputs[str(settings.folders)] = {"listing_sha256": table.source["listing_sha256"]}
    return inputs


def _synthetic_marker(settings: CohortSettings) -> dict | None:
    """The generator's marker file next to the data, if the data are synthetic."""
    base = Path(settings.metadata).parent if settings.metadata else Path(settings.folders)
    marker = base / SYNTHETIC_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def _summary(frame, table, settings, log, proof, image_report) -> dict:
    marker = _synthetic_marker(settings)
    return {
        "synthetic": marker is not None,
        "synthetic_generator": marker,
        "dataset": table.frame["dataset"].iloc[0] if len(table.frame) else None,
        "source": table.source,
        **{k: v for k, v in _describe(frame).items() if k in ("n_images", "n_patients", "n_positive", "prevalence")},
        "splits": {s: _describe(frame[frame["split"] == s]) for s in SPLITS},
        "split_proof": proof,
        "exclusions": log.counts(),
        "n_excluded": int(sum(log.counts().values())),
        "n_invalid": log.n_invalid(),
        "images": image_report,
        "settings": settings.as_dict(),
        "seed": settings.seed,
        "inputs": _input_hashes(settings, table),
        "produced_by": producer("cohort"),
    }


def write_cohort(cohort: Cohort, out_dir: str | Path) -> Path:
    """Write cohort.csv, summary.json, exclusions.csv and images_without_row.txt; return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cohort.frame.to_csv(out / COHORT_CSV, index=False, lineterminator="\n")
    cohort.exclusions.frame_for_csv().to_csv(out / EXCLUSIONS_CSV, index=False, lineterminator="\n")
    (out / SUMMARY_JSON).write_text(json.dumps(cohort.summary, indent=2, sort_keys=False) + "\n")
    # always written (empty when every image has a row), so a list left by an earlier run in the
    # same folder is replaced, never deleted and never mistaken for this run's
    (out / ORPHANS_TXT).write_text("".join(f"{path}\n" for path in cohort.images_without_row))
    return out


def read_cohort(cohort_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Load ``cohort.csv`` and ``summary.json`` written by :func:`write_cohort`."""
    folder = Path(cohort_dir)
    csv_path, summary_path = folder / COHORT_CSV, folder / SUMMARY_JSON
    for needed in (csv_path, summary_path):
        if not needed.is_file():
            raise DatasetError(f"{needed}: not found; make it with `cxr-device cohort --out {folder}`")
    frame = pd.read_csv(csv_path, dtype={"image_id": str, "sex": str, "view": str, "path": str},
                        keep_default_na=False, na_values={"age_years": [""], "follow_up": [""]})
    return frame, json.loads(summary_path.read_text())
