"""The shared loader: every PNG/JPEG flavour to float32 grayscale in [0, 1]."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxr_device.imageio import ImageReadError, load_image

from .conftest import shared

RAMP = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # 4 x 16


def _check(image, expected):
    assert image.dtype == np.float32 and image.ndim == 2
    assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_allclose(image, expected, atol=2 / 255)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_png_8bit_gray_rgb_rgba(tmp_path, mode):
    path = tmp_path / f"x_{mode}.png"
    Image.fromarray(RAMP).convert(mode).save(path)
    _check(load_image(path), RAMP / 255.0)


def test_png_16bit(tmp_path):
    data = (RAMP.astype(np.uint16) * 257)
    path = tmp_path / "x16.png"
    Image.fromarray(data).save(path)
    _check(load_image(path), data / 65535.0)


def test_jpeg(tmp_path):
    steps = np.repeat(np.array([[60, 100, 140, 180]], np.uint8), 16, axis=0).repeat(4, axis=1)  # 16 x 16, 4 bands
    path = tmp_path / "x.jpeg"
    Image.fromarray(steps).save(path, quality=95)
    decoded = load_image(path)
    assert decoded.shape == (16, 16) and np.abs(decoded - steps / 255.0).max() < 0.05  # lossy, but close


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="broken.png"):
        load_image(bad)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(RAMP).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_image(truncated)
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_real_nih_png():
    image = load_image(shared("nih", "images", "00000075_000.png"))
    assert image.shape == (512, 512) and 0.2 < image.mean() < 0.8
