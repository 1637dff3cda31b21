"""Shared fixtures: the real data folder (skipped when absent) and small generated inputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", REPO.parent / "shared" / "data"))
NIH_HEADER_2020 = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                   "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def shared(*parts: str) -> Path:
    """A path under the real data folder; skips the test (with the reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (set CXR_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture
def write_csv(tmp_path):
    """Write CSV text to a file in tmp_path and return its path."""

    def _write(text: str, name: str = "meta.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A small synthetic NIH-format dataset (40 patients, 64 px), generated once per session."""
    from cxr_device.synth import SynthSettings, generate

    out = tmp_path_factory.mktemp("synth")
    csv_path = generate(out, SynthSettings(n_patients=40, seed=3, image_size=64), progress=False)
    return csv_path, out


@pytest.fixture
def make_dicom(tmp_path):
    """Write a synthetic DICOM (valid DX chest PA, 12-bit ramp 512x512 by default)."""
    import numpy as np

    from cxr_device.synth_dicom import write_synthetic_dicom

    def _make(name: str = "ok.dcm", pixels=None, **header):
        if pixels is None:
            pixels = (np.arange(512 * 512).reshape(512, 512) % 4096).astype(np.uint16)
            header.setdefault("bits_stored", 12)
        return write_synthetic_dicom(tmp_path / name, pixels, **header)

    return _make


def pydicom_test_file(name: str) -> Path:
    """A file shipped inside pydicom (never downloaded)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom does not ship {name} in this version")
    return Path(path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A small trained and evaluated run (synthetic data, small_cnn at 32 px): RUN with
    cohort/, model/, evaluation/ and bundle/. Copy it before changing anything in it."""
    from cxr_device.cohort import CohortSettings, build_cohort, write_cohort
    from cxr_device.models import ModelSpec
    from cxr_device.synth import SynthSettings, generate
    from cxr_device.train_config import TrainConfig
    from cxr_device.training import train
    from validation.evaluation import evaluate_run

    root = tmp_path_factory.mktemp("trained")
    csv_path = generate(root / "data", SynthSettings(n_patients=60, seed=11, image_size=64, prevalence=0.3),
                        progress=False)
    run = root / "run"
    write_cohort(build_cohort(CohortSettings(metadata=str(csv_path), images=(str(root / "data"),), seed=2,
                                             val_fraction=0.25, test_fraction=0.25)), run / "cohort")
    config = TrainConfig(model=ModelSpec(arch="small_cnn"), image_size=32, epochs=3, batch_size=16, lr=2e-3, workers=0)
    train(run / "cohort", run, config, progress=False)
    evaluate_run(run, n_bootstrap=200, progress=False)
    from cxr_device.eda import run_eda

    run_eda(run / "cohort", run / "eda", pixel_sample=5, progress=False)
    return run


@pytest.fixture(scope="session", autouse=True)
def _tested_environment(record_testsuite_property):
    """Record in the JUnit report what was tested - package version, git commit, Python, the test
    libraries' and tools' versions - so the testing summary of the software documentation can
    name the version a report verified (fda_submission/software/testing_summary.py)."""
    from fda_submission.software.testing_summary import tested_environment

    for name, value in tested_environment(REPO).items():
        record_testsuite_property(name, value)


def pytest_collection_modifyitems(items):
    """Copy each test's requirement marker(s) into the JUnit report as properties, so that
    `cxr-device trace` can build the traceability matrix from the report alone."""
    for item in items:
        for marker in item.iter_markers("requirement"):
            for rid in marker.args:
                item.user_properties.append(("requirement", rid))


@pytest.fixture
def kill_training(monkeypatch):
    """``arm(n)``: the n-th training epoch from now raises KeyboardInterrupt, as a kill would;
    ``disarm()``: training works again. Returns (arm, disarm)."""
    from cxr_device import training

    real = training._train_epoch

    def arm(n: int) -> None:
        calls = []

        def killed(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(training, "_train_epoch", killed)

    def disarm() -> None:
        monkeypatch.setattr(training, "_train_epoch", real)

    return arm, disarm
