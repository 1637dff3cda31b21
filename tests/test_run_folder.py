"""`cxr-device run --out` may not be inside a folder the run reads images from, nor hold one
(issue 22, item 7): the run's files would land among its training images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxr_device.cli import main
from cxr_device.errors import CxrDeviceError
from fda_submission.pipeline import Pipeline
from fda_submission.run_config import load_run_config

from .test_pipeline import CONFIG


def _class_folders(root):
    """A tiny NORMAL/PNEUMONIA class-folder dataset of real JPEGs."""
    for i in range(4):
        for folder, name in (("NORMAL", f"IM-{i:04d}-0001.jpeg"), ("PNEUMONIA", f"person{i}_bacteria_{i}.jpeg")):
            (root / folder).mkdir(parents=True, exist_ok=True)
            pixels = (np.random.default_rng(i).random((64, 64)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / name)
    return root


def _config(tmp_path, data: str, extra: str = ""):
    text = CONFIG.replace("EPOCHS", "1").replace(
        "  synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}\n", f"  {data}\n") + extra
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return load_run_config(path)


@pytest.mark.requirement("REQ-RUN-001")
def test_a_run_folder_inside_the_training_images_is_refused_naming_both(tmp_path, capsys):
    images = _class_folders(tmp_path / "images")
    config = _config(tmp_path, f"folders: {images}")
    listing = sorted(p.relative_to(images) for p in images.rglob("*"))
    with pytest.raises(CxrDeviceError, match="inside") as err:
        Pipeline(config, images / "runs" / "tiny", progress=False, log=lambda line: None).run()
    assert f"{images / 'runs' / 'tiny'}" in str(err.value) and "data.folders" in str(err.value)
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == listing  # nothing written there
    assert main(["run", str(tmp_path / "run.yaml"), "--out", str(images / "NORMAL"), "--quiet"]) == 2
    message = capsys.readouterr().err
    assert str(images) in message and str(images / "NORMAL") in message and len(message.splitlines()) == 1


def test_an_input_folder_inside_the_run_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    images = _class_folders(run / "external")
    with pytest.raises(CxrDeviceError, match="is inside the run folder") as err:
        Pipeline(_config(tmp_path, f"folders: {images}"), run, progress=False, log=lambda line: None)
    assert str(images) in str(err.value) and str(run) in str(err.value)


def test_an_assessed_dicom_folder_counts_and_the_runs_own_cohort_does_not(tmp_path, make_dicom):
    dicom = make_dicom("exports/a.dcm").parent
    (tmp_path / "labels.csv").write_text("path,label\na.dcm,1\n")
    assess = f"assess:\n  - {{name: site, dicom: {dicom}, labels: labels.csv}}\n"
    config = _config(tmp_path, "synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}", assess)
    with pytest.raises(CxrDeviceError, match=r"assess\[0\]\.dicom"):
        Pipeline(config, dicom / "run", progress=False, log=lambda line: None)
    own = f"assess:\n  - {{name: internal, cohort: {tmp_path / 'run' / 'cohort'}, split: test}}\n"
    config = _config(tmp_path, "synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}", own)
    Pipeline(config, tmp_path / "run", progress=False, log=lambda line: None)  # assessing the run's own cohort
