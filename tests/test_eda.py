"""EDA: numbers agree with the cohort; figures exist under their stable names; bad images counted."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from cxr_device.cohort import CohortSettings, build_cohort, write_cohort
from cxr_device.eda import EDA_JSON, FIGURES, run_eda

from .conftest import shared


@pytest.fixture
def cohort_dir(synth_dataset, tmp_path):
    csv_path, root = synth_dataset
    return write_cohort(build_cohort(CohortSettings(metadata=str(csv_path), images=(str(root),))), tmp_path / "cohort")


def test_all_figures_and_numbers_consistent(cohort_dir, tmp_path):
    report = run_eda(cohort_dir, tmp_path / "eda", pixel_sample=10, progress=False)
    assert set(report["figures"]) == set(FIGURES) and report["skipped"] == {}
    for name in report["figures"].values():
        assert (tmp_path / "eda" / name).stat().st_size > 5_000  # a real PNG, not an empty canvas
    on_disk = json.loads((tmp_path / "eda" / EDA_JSON).read_text())
    assert on_disk["synthetic"] is True and on_disk["n_unreadable"] == 0
    cohort = pd.read_csv(cohort_dir / "cohort.csv")
    assert on_disk["prevalence"]["all"]["n_positive"] == cohort["pneumonia"].sum()
    assert on_disk["images_per_patient"]["max"] == cohort.groupby("patient_id").size().max()
    hist = on_disk["pixel_intensity"]["pneumonia"]["mean_histogram"]
    assert sum(hist) == pytest.approx(1.0, abs=1e-3)


def test_unreadable_image_is_counted_not_fatal(cohort_dir, tmp_path):
    cohort = pd.read_csv(cohort_dir / "cohort.csv")
    victim = cohort["path"].iloc[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    cohort.loc[0, "path"] = str(broken)
    cohort.to_csv(cohort_dir / "cohort.csv", index=False)
    report = run_eda(cohort_dir, tmp_path / "eda", pixel_sample=1000, progress=False)
    assert report["n_unreadable"] == 1 and "broken.png" in report["pixel_intensity"]["unreadable"][0]
    assert victim != str(broken)


def test_real_metadata_only_cohort_skips_pixels_with_reason(tmp_path):
    metadata = shared("nih", "Data_Entry_2017_v2020.csv.gz")
    cohort_dir = write_cohort(build_cohort(CohortSettings(metadata=str(metadata), metadata_only=True)), tmp_path / "c")
    report = run_eda(cohort_dir, tmp_path / "eda", progress=False)
    assert "metadata-only" in report["skipped"]["pixel_intensity"]
    co = report["cooccurrence"]["findings"]
    assert co["Infiltration"]["n_with_pneumonia"] == 605  # NIH: Pneumonia|Infiltration co-labels
    assert report["age_by_class"]["pneumonia"]["n"] == 1_431
