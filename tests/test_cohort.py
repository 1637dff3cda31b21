"""The cohort step end to end: reproducible bytes, summary contract, real data."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from cxr_device import exclusions as ex
from cxr_device.cohort import CohortSettings, build_cohort, read_cohort, write_cohort
from cxr_device.errors import CxrDeviceError
from cxr_device.filters import Filters
from cxr_device.hashing import sha256_file

from .conftest import shared


def _settings(synth_dataset, **kw):
    csv_path, root = synth_dataset
    return CohortSettings(metadata=str(csv_path), images=(str(root),), **kw)


@pytest.mark.requirement("REQ-COHORT-003")
def test_same_inputs_and_seed_give_byte_identical_outputs(synth_dataset, tmp_path):
    a = write_cohort(build_cohort(_settings(synth_dataset, seed=5)), tmp_path / "a")
    b = write_cohort(build_cohort(_settings(synth_dataset, seed=5)), tmp_path / "b")
    c = write_cohort(build_cohort(_settings(synth_dataset, seed=6)), tmp_path / "c")
    for name in ("cohort.csv", "summary.json", "exclusions.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "cohort.csv").read_bytes() != (c / "cohort.csv").read_bytes()


@pytest.mark.requirement("REQ-COHORT-001")
def test_summary_contract(synth_dataset, tmp_path):
    cohort = build_cohort(_settings(synth_dataset, filters=Filters(min_age=18, views=("PA", "AP"))))
    out = write_cohort(cohort, tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    frame, _ = read_cohort(out)
    assert summary["synthetic"] is True
    assert summary["n_images"] == len(frame) and summary["n_patients"] == frame["patient_id"].nunique()
    assert summary["n_positive"] == frame["pneumonia"].sum()
    assert sum(s["n_images"] for s in summary["splits"].values()) == len(frame)
    for split in summary["splits"].values():
        assert {"n_images", "n_patients", "n_positive", "prevalence", "age", "sex", "view"} <= set(split)
        assert {"mean", "sd", "min", "max"} <= set(split["age"])
    assert summary["split_proof"]["patient_disjoint"] is True
    assert all(v == [] for v in summary["split_proof"]["intersections"].values())
    assert frame["age_years"].min() >= 18
    assert summary["settings"]["filters"]["min_age"] == 18 and summary["seed"] == 0
    csv_path = synth_dataset[0]
    assert summary["inputs"][str(csv_path)]["sha256"] == sha256_file(csv_path)
    assert summary["produced_by"]["tool"] == "cxr-device"
    excluded = pd.read_csv(out / "exclusions.csv")
    assert summary["exclusions"] == {ex.AGE_BELOW_MIN: len(excluded)} and len(excluded) > 0


@pytest.mark.requirement("REQ-COHORT-002")
def test_every_input_row_is_in_the_cohort_or_excluded(synth_dataset, tmp_path):
    csv_path, root = synth_dataset
    bad = tmp_path / "meta.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace(",M,", ",Q,").replace(",F,", ",Q,")  # unknown sex
    lines.append("not,enough,fields")
    bad.write_text("\n".join(lines) + "\n")
    cohort = build_cohort(CohortSettings(metadata=str(bad), images=(str(root),), balance_train=1.0))
    n_rows = len(lines) - 1
    assert len(cohort.frame) + sum(cohort.summary["exclusions"].values()) == n_rows
    assert cohort.n_invalid == 2
    assert cohort.summary["exclusions"][ex.UNKNOWN_SEX] == 1 and cohort.summary["exclusions"][ex.MALFORMED_ROW] == 1


def test_settings_that_cannot_work_are_refused(synth_dataset):
    csv_path, _ = synth_dataset
    for bad in (CohortSettings(), CohortSettings(metadata=str(csv_path)),
                CohortSettings(metadata=str(csv_path), metadata_only=True, split="official"),
                CohortSettings(metadata=str(csv_path), metadata_only=True, test_list="t.txt"),
                CohortSettings(metadata=str(csv_path), metadata_only=True, val_fraction=0.6, test_fraction=0.6)):
        with pytest.raises(CxrDeviceError):
            build_cohort(bad)


def test_real_nih_images_621_rows_32_positive():
    metadata = shared("nih", "Data_Entry_2017_v2020.csv.gz")
    cohort = build_cohort(CohortSettings(metadata=str(metadata), images=(str(shared("nih", "images")),)))
    s = cohort.summary
    assert (s["n_images"], s["n_positive"], s["n_patients"]) == (621, 32, 621)
    assert s["exclusions"] == {ex.NO_IMAGE_FILE: 112_120 - 621} and cohort.n_invalid == 0
    assert s["images"]["n_images_without_row"] == 0
    assert cohort.frame["path"].str.endswith(".png").all()


def test_real_metadata_only_full_population_with_filters():
    metadata = shared("nih", "Data_Entry_2017_v2020.csv.gz")
    full = build_cohort(CohortSettings(metadata=str(metadata), metadata_only=True))
    assert (full.summary["n_images"], full.summary["n_patients"]) == (112_120, 30_805)
    adults_pa = build_cohort(CohortSettings(metadata=str(metadata), metadata_only=True,
                                            filters=Filters(min_age=18, max_age=80, views=("PA",))))
    f = adults_pa.frame
    assert f["age_years"].between(18, 80).all() and set(f["view"]) == {"PA"}
    assert len(f) + sum(adults_pa.summary["exclusions"].values()) == 112_120


def test_real_pediatric_resplit_by_patient_with_class_cap():
    cohort = build_cohort(CohortSettings(folders=str(shared("kermany", "train")), class_cap=1000, seed=1))
    f = cohort.frame
    assert f["pneumonia"].value_counts().to_dict() == {0: 1000, 1: 1000}
    assert cohort.summary["split_proof"]["patient_disjoint"]
    assert cohort.summary["exclusions"] == {ex.CLASS_CAP: 5216 - 2000}
