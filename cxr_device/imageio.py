"""The one image loader: a path in, a float32 grayscale image in [0, 1] (H x W) out.

Training, EDA and inference all read pixels through :func:`load_image`, so an image is
decoded the same way everywhere. DICOM is recognised by content (the ``DICM`` marker) or by a
``.dcm``/``.dicom`` suffix; everything else goes to Pillow (PNG 8/16-bit, JPEG, ...).
"""
from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dicom_pixels import (
    DEFAULT_MAX_PIXELS,
    DicomReadError,
    check_trustworthy,
    read_dicom_pixels,
)
from .errors import CxrDeviceError

DICOM_SUFFIXES = (".dcm", ".dicom")


class ImageReadError(CxrDeviceError):
    """A file could not be decoded as an image; the message names the file and the problem."""


def is_dicom(path: str | Path) -> bool:
    """True when a regular file carries the DICOM ``DICM`` marker at byte 128."""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            return False
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode DICOM, PNG (8/16-bit; gray, RGB, RGBA) or JPEG to float32 grayscale in [0, 1], (H, W).

    Only regular files are opened (a pipe or device would block for ever). Images with more
    than ``max_pixels`` declared pixels are refused before decoding; empty, non-finite or
    constant pixels after decoding are refused too (nothing to score). Every failure, DICOM
    included, raises :class:`ImageReadError` naming the file and the problem.
    """
    path = Path(path)
    if is_dicom(path) or path.suffix.lower() in DICOM_SUFFIXES:
        try:
            return read_dicom_pixels(path, max_pixels)
        except DicomReadError as err:
            raise ImageReadError(str(err)) from None
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ImageReadError(f"{path}: not a regular file (a folder, pipe or device); nothing was read")
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(f"{path}: {width} x {height} pixels is over the limit of {max_pixels:,}; "
                                     "refused before decoding (possible decompression bomb)")
            image.load()
            pixels = _to_unit_gray(image)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None
    try:
        check_trustworthy(pixels, str(path))
    except DicomReadError as err:
        raise ImageReadError(str(err)) from None
    return pixels


def _to_unit_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
        image = image.convert("L")
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"unsupported pixel layout {image.mode} with shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):  # 16-bit PNGs open as I;16 (or I)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return np.clip(array.astype(np.float32) / top, 0.0, 1.0)
    return np.clip(array.astype(np.float32), 0.0, 1.0)
