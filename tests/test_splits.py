"""Patient-level splitting: properties for every seed and fraction, plus the official lists."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_device import exclusions as ex
from cxr_device.errors import SplitError
from cxr_device.splits import (
    SPLITS,
    assert_patient_disjoint,
    balance_train,
    folder_split,
    official_split,
    split_by_patient,
    split_proof,
    subsample_val_prevalence,
)

from .conftest import shared


@st.composite
def cohorts(draw):
    """Random cohorts: patients with 1..6 images each, random labels."""
    n_patients = draw(st.integers(1, 60))
    sizes = draw(st.lists(st.integers(1, 6), min_size=n_patients, max_size=n_patients))
    patients = np.repeat(np.arange(n_patients), sizes)
    labels = draw(st.lists(st.integers(0, 1), min_size=len(patients), max_size=len(patients)))
    order = draw(st.permutations(range(len(patients))))
    return pd.DataFrame({"patient_id": patients[list(order)], "pneumonia": np.array(labels)[list(order)]})


fractions = st.tuples(st.floats(0, 0.45), st.floats(0, 0.45))


@pytest.mark.requirement("REQ-COHORT-001")
@settings(max_examples=150, deadline=None)
@given(cohorts(), fractions, st.integers(0, 2**32 - 1))
def test_splits_partition_rows_and_no_patient_crosses(frame, fracs, seed):
    val, test = fracs
    split = split_by_patient(frame["patient_id"], frame["pneumonia"], val, test, seed)
    assert len(split) == len(frame)
    assert set(split) <= set(SPLITS)  # every row in exactly one split
    per_patient = pd.Series(split).groupby(frame["patient_id"].to_numpy()).nunique()
    assert (per_patient == 1).all()
    assert split_proof(frame.assign(split=split))["patient_disjoint"]


@settings(max_examples=50, deadline=None)
@given(cohorts(), st.integers(0, 1000))
def test_split_is_deterministic_and_independent_of_row_order(frame, seed):
    a = split_by_patient(frame["patient_id"], frame["pneumonia"], 0.2, 0.2, seed)
    shuffled = frame.sample(frac=1, random_state=1)
    b = split_by_patient(shuffled["patient_id"], shuffled["pneumonia"], 0.2, 0.2, seed)
    assert dict(zip(frame["patient_id"], a)) == dict(zip(shuffled["patient_id"], b))


def test_zero_fractions_put_everything_in_train():
    frame = pd.DataFrame({"patient_id": [1, 1, 2, 3], "pneumonia": [0, 1, 0, 0]})
    assert set(split_by_patient(frame["patient_id"], frame["pneumonia"], 0.0, 0.0, 0)) == {"train"}


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0), (0.2, 0.9)])
def test_bad_fractions_are_refused(val, test):
    frame = pd.DataFrame({"patient_id": [1], "pneumonia": [0]})
    with pytest.raises(SplitError, match="fraction"):
        split_by_patient(frame["patient_id"], frame["pneumonia"], val, test, 0)


@pytest.mark.requirement("REQ-COHORT-001")
def test_proof_catches_a_crossing_patient():
    frame = pd.DataFrame({"patient_id": [1, 1, 2], "split": ["train", "test", "val"]})
    proof = split_proof(frame)
    assert proof["intersections"]["train&test"] == [1] and not proof["patient_disjoint"]
    with pytest.raises(SplitError, match="more than one split"):
        assert_patient_disjoint(frame)


def _frame(n_patients=40, per_patient=2, positive_every=5):
    patients = np.repeat(np.arange(n_patients), per_patient)
    return pd.DataFrame({
        "image_id": [f"{p:08d}_{k:03d}.png" for p in range(n_patients) for k in range(per_patient)],
        "patient_id": patients,
        "pneumonia": (patients % positive_every == 0).astype(int),
    })


def test_official_lists_test_fixed_rest_split_by_patient_and_unlisted_excluded():
    frame = _frame()
    test_ids = set(frame.loc[frame["patient_id"] < 10, "image_id"])
    train_val_ids = set(frame.loc[(frame["patient_id"] >= 10) & (frame["patient_id"] < 38), "image_id"])
    log = ex.ExclusionLog()
    out = official_split(frame, train_val_ids, test_ids, 0.25, 0, log)
    assert set(out.loc[out["split"] == "test", "image_id"]) == test_ids
    assert set(out.loc[out["split"] != "test", "image_id"]) == train_val_ids
    assert {"train", "val"} <= set(out["split"])
    assert log.counts() == {ex.NOT_IN_OFFICIAL_LISTS: 4}  # patients 38 and 39, two images each
    assert split_proof(out)["patient_disjoint"]


@pytest.mark.requirement("REQ-COHORT-001")
def test_official_lists_that_leak_a_patient_are_refused():
    frame = _frame()
    test_ids = {"00000001_000.png"}
    train_val_ids = set(frame["image_id"]) - test_ids
    with pytest.raises(SplitError, match="patient"):
        official_split(frame, train_val_ids, test_ids, 0.2, 0, ex.ExclusionLog())


def test_folder_split_kept_or_refused_when_it_leaks():
    frame = pd.DataFrame({"patient_id": ["a", "b", "c"], "source_split": ["train", "val", "test"]})
    assert list(folder_split(frame)["split"]) == ["train", "val", "test"]
    with pytest.raises(SplitError, match="--split patient"):
        folder_split(frame.assign(patient_id=["a", "a", "c"]))
    with pytest.raises(SplitError, match="only class folders"):
        folder_split(frame.assign(source_split=""))


@pytest.mark.parametrize("ratio", [1.0, 2.0, 3.5])
def test_balance_train_reaches_ratio_and_touches_only_train_negatives(ratio):
    frame = _frame(200, 1, positive_every=10).assign(split=lambda f: np.where(f["patient_id"] < 150, "train", "val"))
    log = ex.ExclusionLog()
    out = balance_train(frame, ratio, 0, log)
    train = out[out["split"] == "train"]
    n_pos = int(train["pneumonia"].sum())
    assert len(train) - n_pos == round(ratio * n_pos)
    assert (out["split"] == "val").sum() == (frame["split"] == "val").sum()
    assert log.counts() == {ex.BALANCE_TRAIN: len(frame) - len(out)}
    assert out.equals(balance_train(frame, ratio, 0, ex.ExclusionLog()))  # seeded


def test_val_prevalence_subsamples_validation_negatives():
    frame = _frame(200, 1, positive_every=10).assign(split="val")
    out = subsample_val_prevalence(frame, 0.25, 0, ex.ExclusionLog())
    assert out["pneumonia"].mean() == pytest.approx(0.25, abs=0.01)
    with pytest.raises(SplitError, match="only"):
        subsample_val_prevalence(frame, 0.01, 0, ex.ExclusionLog())


def test_real_metadata_split_keeps_prevalence_and_fractions():
    from cxr_device.nih_metadata import read_nih_metadata

    frame = read_nih_metadata(shared("nih", "Data_Entry_2017_v2020.csv.gz")).frame
    split = split_by_patient(frame["patient_id"], frame["pneumonia"], 0.15, 0.15, 0)
    frame = frame.assign(split=split)
    population = frame["pneumonia"].mean()
    for name, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        part = frame[frame["split"] == name]
        assert len(part) / len(frame) == pytest.approx(share, abs=0.01)
        assert part["pneumonia"].mean() == pytest.approx(population, abs=0.002)
    assert split_proof(frame)["patient_disjoint"]
