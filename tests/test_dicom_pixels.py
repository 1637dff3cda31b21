"""DICOM pixels through the one loader: encodings, photometry, rescale, VOI, guards, errors."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cxr_device.dicom_pixels import DicomReadError, read_dicom_pixels, read_header
from cxr_device.imageio import ImageReadError, load_image

from .conftest import shared

RG1 = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_UNCI.dcm"]


@pytest.mark.requirement("REQ-PIX-001")
def test_all_four_real_encodings_give_the_same_image():
    images = {name: load_image(shared("dicom", name)) for name in RG1}
    reference = images["RG1_UNCR.dcm"]
    assert reference.shape == (1955, 1841) and reference.dtype == np.float32
    np.testing.assert_array_equal(images["RG1_J2KR.dcm"], reference)  # JPEG 2000 lossless
    np.testing.assert_array_equal(images["RG1_UNCI.dcm"], images["RG1_J2KI.dcm"])  # lossy, stored both ways
    lossy = np.abs(images["RG1_J2KI.dcm"] - reference)
    assert lossy.mean() < 0.003 and lossy.max() < 0.05  # ~0.2 % of the range on average


@pytest.mark.requirement("REQ-PIX-001")
def test_real_monochrome1_is_inverted_so_bone_is_bright():
    mono2 = load_image(shared("dicom", "siim_cr_chest_pa_jpeg_baseline.dcm"))  # JPEG baseline
    mono1 = load_image(shared("dicom", "siim_cr_chest_pa_relabelled_monochrome1.dcm"))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    rg1 = load_image(shared("dicom", "RG1_UNCR.dcm"))  # MONOCHROME1, 15 bits stored
    spine, lung = rg1[900:1100, 880:960].mean(), rg1[700:900, 400:600].mean()
    assert spine > lung + 0.1


def test_bits_stored_sets_the_scale(make_dicom):
    pixels = np.array([[0, 1024, 2048, 4095]] * 4, np.uint16)
    image = load_image(make_dicom("b12.dcm", pixels, bits_stored=12))
    np.testing.assert_allclose(image[0], [0, 1024 / 4095, 2048 / 4095, 1.0], atol=1e-6)
    image16 = load_image(make_dicom("b16.dcm", pixels, bits_stored=16))
    np.testing.assert_allclose(image16[0], pixels[0] / 65535, atol=1e-6)


@pytest.mark.requirement("REQ-PIX-001")
def test_monochrome1_synthetic(make_dicom):
    pixels = np.array([[0, 100, 255]] * 3, np.uint8)
    np.testing.assert_allclose(load_image(make_dicom("m1.dcm", pixels, photometric="MONOCHROME1"))[0],
                               1 - pixels[0] / 255, atol=1e-6)


def test_rescale_slope_intercept_respected(make_dicom):
    pixels = np.array([[0, 1000, 4095]] * 3, np.uint16)
    plain = load_image(make_dicom("p.dcm", pixels, bits_stored=12))
    rescaled = load_image(make_dicom("r.dcm", pixels, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024))
    np.testing.assert_allclose(rescaled, plain, atol=1e-6)  # same stored value, same intensity


def test_window_is_applied(make_dicom):
    pixels = np.array([[0, 1000, 1500, 2000, 4095]] * 2, np.uint16)
    image = load_image(make_dicom("w.dcm", pixels, bits_stored=12, WindowCenter=1500, WindowWidth=1000))
    assert image[0, 0] == 0.0 and image[0, -1] == 1.0
    assert image[0, 1] == pytest.approx(0.0, abs=1e-3) and image[0, 3] == pytest.approx(1.0, abs=1e-3)
    assert image[0, 2] == pytest.approx(0.5, abs=0.01)


def test_voi_lut_sequence_is_applied(make_dicom):
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [256, 0, 8])
    item.add_new("LUTData", "US", list(range(255, -1, -1)))  # an inverting LUT
    pixels = np.array([[0, 128, 255]] * 2, np.uint8)
    image = load_image(make_dicom("lut.dcm", pixels, VOILUTSequence=Sequence([item])))
    np.testing.assert_allclose(image[0], [1.0, 127 / 255, 0.0], atol=1e-6)


@pytest.mark.requirement("REQ-PIX-002")
def test_multiframe_and_rgb_refused_with_clear_messages(make_dicom):
    frames = make_dicom("mf.dcm", np.zeros((2, 8, 8), np.uint8), NumberOfFrames=2)
    with pytest.raises(ImageReadError, match="2 frames"):
        load_image(frames)
    rgb = make_dicom("rgb.dcm", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageReadError, match="SamplesPerPixel 3"):
        load_image(rgb)


@pytest.mark.requirement("REQ-PIX-002")
def test_huge_declared_size_refused_before_decoding(make_dicom):
    bomb = make_dicom("bomb.dcm", np.zeros((8, 8), np.uint8), Rows=60000, Columns=60000)
    with pytest.raises(DicomReadError, match="refused before decoding"):
        read_dicom_pixels(bomb)
    small_limit = make_dicom("ok.dcm", np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageReadError, match="over the limit of 1,000"):
        load_image(small_limit, max_pixels=1000)


def test_errors_name_the_file_and_the_problem(make_dicom, tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.dcm: empty file"):
        load_image(empty)
    text = tmp_path / "text.dcm"
    text.write_text("hello")
    with pytest.raises(ImageReadError, match="text.dcm: not a DICOM file"):
        load_image(text)
    good = make_dicom("good.dcm")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DicomReadError, match="cut.dcm: truncated"):
        read_header(cut)  # caught from the header alone, without decoding
    with pytest.raises(ImageReadError, match="cut.dcm: truncated"):
        load_image(cut)
    no_pixels = make_dicom("nopix.dcm", PixelData=None)
    with pytest.raises(ImageReadError, match="nopix.dcm: no Pixel Data"):
        load_image(no_pixels)


def test_unsupported_transfer_syntax_names_the_packages(make_dicom):
    from pydicom import dcmread

    path = make_dicom("ts.dcm")
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"  # a private syntax nobody decodes
    ds.save_as(path, implicit_vr=False, little_endian=True)
    with pytest.raises(ImageReadError, match="pip install pylibjpeg"):
        load_image(path)


def test_png_renamed_dcm_is_not_read_as_dicom(tmp_path):
    from PIL import Image

    path = tmp_path / "image.dcm"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, format="PNG")
    with pytest.raises(ImageReadError, match="not a DICOM file"):
        load_image(path)
