"""predict: refusals with the attribute named, decisions at the locked threshold, Grad-CAM."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_device.cli import main
from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.inference import Predictor
from cxr_device.runtime.pipeline import (
    ACCEPTED,
    NO_HEADER_NOTE,
    REFUSED,
    UNREADABLE,
    predict_files,
)

from .conftest import pydicom_test_file


@pytest.fixture(scope="module")
def bundle(trained_run):
    return load_bundle(trained_run / "bundle")


def _chest(make_dicom, name, **header):
    pixels = (np.random.default_rng(0).random((512, 512)) * 4095).astype(np.uint16)
    return make_dicom(name, pixels, bits_stored=12, **header)


@pytest.mark.requirement("REQ-PRED-001")
def test_ct_and_lateral_are_refused_naming_the_attribute(bundle, make_dicom):
    results = predict_files([pydicom_test_file("CT_small.dcm"), _chest(make_dicom, "lat.dcm", ViewPosition="LL")],
                            bundle)
    ct, lateral = results
    assert ct.status == REFUSED and ct.probability is None and "Modality" in ct.reason and "'CT'" in ct.reason
    assert lateral.status == REFUSED and lateral.probability is None
    assert "ViewPosition" in lateral.reason and "'LL'" in lateral.reason


def test_accepted_dicom_gets_probability_and_decision_at_the_threshold(bundle, make_dicom, tmp_path):
    good = _chest(make_dicom, "good.dcm")
    [result] = predict_files([good], bundle, heatmap_dir=tmp_path / "heat")
    assert result.status == ACCEPTED and 0.0 <= result.probability <= 1.0
    assert result.threshold == bundle.threshold
    assert result.decision == ("pneumonia" if result.probability >= bundle.threshold else "no pneumonia")
    heatmap = Image.open(result.heatmap)
    assert heatmap.width >= 640


def test_png_needs_the_flag_and_says_no_header_checks(bundle, tmp_path):
    png = tmp_path / "x.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(png)
    [refused] = predict_files([png], bundle)
    assert refused.status == REFUSED and "--allow-non-dicom" in refused.reason
    [accepted] = predict_files([png], bundle, allow_non_dicom=True)
    assert accepted.status == ACCEPTED and accepted.note == NO_HEADER_NOTE


def test_unreadable_and_every_input_once_in_order(bundle, make_dicom, tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"junk")
    paths = [_chest(make_dicom, "a.dcm"), broken, _chest(make_dicom, "b.dcm", Modality="MR")]
    results = predict_files(paths, bundle)
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.status for r in results] == [ACCEPTED, UNREADABLE, REFUSED]


def test_grad_cam_is_finite_and_image_sized(bundle, make_dicom):
    predictor = Predictor(bundle)
    tensor, display = predictor.prepare(_chest(make_dicom, "g.dcm"))
    cam = predictor.grad_cam(tensor)
    assert cam.shape == display.shape == (32, 32)
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1


def test_cli_exit_codes_and_no_phi(trained_run, make_dicom, capsys):
    good = _chest(make_dicom, "c.dcm")
    assert main(["predict", "--bundle", str(trained_run / "bundle"), str(good), "--format", "json"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out)
    assert document["summary"]["accepted"] == 1 and "SYNTHETIC^PHANTOM" not in out
    ct = pydicom_test_file("CT_small.dcm")
    assert main(["predict", "--bundle", str(trained_run / "bundle"), str(good), str(ct)]) == 1
    assert main(["predict", "--bundle", str(trained_run / "model"), str(good)]) == 2  # not a bundle


def test_heatmaps_of_files_with_the_same_name_in_different_folders_do_not_overwrite(bundle, make_dicom, tmp_path):
    first = _chest(make_dicom, "site_a/image.dcm")
    second = make_dicom("site_b/image.dcm", (np.random.default_rng(1).random((512, 512)) * 4095).astype(np.uint16),
                        bits_stored=12)
    results = predict_files([first, second], bundle, heatmap_dir=tmp_path / "heat")
    maps = [r.heatmap for r in results]
    assert len(set(maps)) == 2 and all(Path(m).is_file() for m in maps)
    assert sorted(p.name for p in (tmp_path / "heat").iterdir()) == sorted(Path(m).name for m in maps)
    again = predict_files([first], bundle, heatmap_dir=tmp_path / "heat")
    assert again[0].heatmap == maps[0]  # stable across runs
