"""Patient-level train/val/test splits, with the proof that no patient is in two splits.

All randomness comes from ``numpy.random.default_rng(seed)``; the same rows and seed always
give the same assignment, whatever order the rows come in.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from . import exclusions as ex
from .errors import SplitError
from .findings import TARGET

SPLITS = ("train", "val", "test")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Fractions must each be in [0, 1) and leave something for training."""
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise SplitError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise SplitError(
            f"--val-fraction {val_fraction} + --test-fraction {test_fraction} leave nothing for training"
        )


def split_by_patient(
    patients: pd.Series, labels: pd.Series, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Assign each row to ``train``/``val``/``test`` so that every patient lands in one split.

    Patients are stratified by whether any of their images is positive, shuffled with ``seed``
    and laid end to end by image count; a patient goes to the split in which the middle of its
    images falls (test first, then val, then train). Image-level fractions and prevalence
    therefore stay close to the requested fractions and to the population's.
    """
    check_fractions(val_fraction, test_fraction)
    rows = pd.DataFrame({"patient": patients.to_numpy(), "label": labels.to_numpy()})
    per_patient = rows.groupby("patient", sort=True)["label"].agg(["size", "max"])
    rng = np.random.default_rng(seed)
    assignment = pd.Series("train", index=per_patient.index, dtype=object)
    for positive in (1, 0):
        stratum = per_patient[per_patient["max"] == positive]
        if stratum.empty:
            continue
        stratum = stratum.iloc[rng.permutation(len(stratum))]
        sizes = stratum["size"].to_numpy(dtype=float)
        middle = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        split = np.where(middle < test_fraction, "test", np.where(middle < test_fraction + val_fraction, "val", "train"))
        assignment[stratum.index] = split
    return rows["patient"].map(assignment).to_numpy(dtype=object)


def official_split(
    frame: pd.DataFrame, train_val_ids: set[str], test_ids: set[str], val_fraction: float, seed: int,
    log: ex.ExclusionLog,
) -> pd.DataFrame:
    """Use the NIH lists: ``test_list.txt`` is test; ``train_val_list.txt`` is split by patient
    into train and val, ``val_fraction`` being the share of train_val held out for validation.

    Rows in neither list are excluded; lists that put one patient on both sides are refused.
    """
    overlap = train_val_ids & test_ids
    if overlap:
        raise SplitError(f"{len(overlap)} image(s) are in both split lists, e.g. {sorted(overlap)[:3]}")
    in_test = frame["image_id"].isin(test_ids)
    in_train_val = frame["image_id"].isin(train_val_ids)
    unlisted = ~(in_test | in_train_val)
    log.add(frame[unlisted], ex.NOT_IN_OFFICIAL_LISTS, "image id in neither --train-val-list nor --test-list")
    frame = frame[~unlisted].copy()
    in_test = in_test[frame.index]
    crossing = set(frame.loc[in_test, "patient_id"]) & set(frame.loc[~in_test, "patient_id"])
    if crossing:
        raise SplitError(
            f"the official lists put {len(crossing)} patient(s) in both train_val and test "
            f"(e.g. {sorted(crossing)[:5]}); use --split patient"
        )
    split = np.full(len(frame), "test", dtype=object)
    pool = ~in_test.to_numpy()
    split[pool] = split_by_patient(frame.loc[pool, "patient_id"], frame.loc[pool, TARGET], val_fraction, 0.0, seed)
    frame["split"] = split
    return frame


def folder_split(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep a class-folder dataset's own train/val/test folders as the split."""
    if frame.empty or frame["source_split"].eq("").all():
        raise SplitError("--split official needs train/val/test folders; this dataset has only class folders. "
                         "Use --split patient")
    frame = frame.assign(split=frame["source_split"])
    proof = split_proof(frame)
    if not proof["patient_disjoint"]:
        raise SplitError(
            "the dataset's own folders put patients in more than one split "
            f"({proof['intersections']}); use --split patient to re-split by patient"
        )
    return frame


def balance_train(frame: pd.DataFrame, ratio: float, seed: int, log: ex.ExclusionLog) -> pd.DataFrame:
    """Undersample training negatives to ``ratio`` negatives per positive (seeded)."""
    if ratio <= 0:
        raise SplitError(f"--balance-train must be positive, got {ratio}")
    train = frame["split"] == "train"
    negatives = frame.index[train & (frame[TARGET] == 0)]
    keep_n = int(round(ratio * int((train & (frame[TARGET] == 1)).sum())))
    return _subsample(frame, negatives, keep_n, seed, ex.BALANCE_TRAIN,
                      f"training negative removed by --balance-train {ratio:g}", log)


def subsample_val_prevalence(frame: pd.DataFrame, prevalence: float, seed: int, log: ex.ExclusionLog) -> pd.DataFrame:
    """Remove validation negatives (seeded) until validation prevalence reaches ``prevalence``."""
    if not 0.0 < prevalence < 1.0:
        raise SplitError(f"--val-prevalence must be in (0, 1), got {prevalence}")
    val = frame["split"] == "val"
    n_pos = int((val & (frame[TARGET] == 1)).sum())
    negatives = frame.index[val & (frame[TARGET] == 0)]
    keep_n = int(round(n_pos * (1 - prevalence) / prevalence))
    if keep_n > len(negatives):
        raise SplitError(
            f"--val-prevalence {prevalence:g} needs {keep_n} validation negatives but there are only "
            f"{len(negatives)} (validation prevalence is already {n_pos / max(1, n_pos + len(negatives)):.4f})"
        )
    return _subsample(frame, negatives, keep_n, seed, ex.VAL_PREVALENCE,
                      f"validation negative removed by --val-prevalence {prevalence:g}", log)


def _subsample(frame, candidates: pd.Index, keep_n: int, seed: int, reason: str, detail: str, log) -> pd.DataFrame:
    if keep_n >= len(candidates):
        return frame
    rng = np.random.default_rng(seed)
    drop = candidates[np.sort(rng.permutation(len(candidates))[keep_n:])]
    log.add(frame.loc[drop], reason, detail)
    return frame.drop(index=drop)


def split_proof(frame: pd.DataFrame) -> dict:
    """Patients per split and every pairwise intersection (lists of patient ids; empty = proof)."""
    patients = {s: set(frame.loc[frame["split"] == s, "patient_id"]) for s in SPLITS}
    intersections = {f"{a}&{b}": sorted(patients[a] & patients[b]) for a, b in combinations(SPLITS, 2)}
    return {
        "n_patients": {s: len(patients[s]) for s in SPLITS},
        "intersections": intersections,
        "patient_disjoint": not any(intersections.values()),
    }


def assert_patient_disjoint(frame: pd.DataFrame) -> dict:
    """Return :func:`split_proof`, raising :class:`SplitError` if any patient crosses splits."""
    proof = split_proof(frame)
    if not proof["patient_disjoint"]:
        raise SplitError(f"patients in more than one split: {proof['intersections']}")
    return proof
