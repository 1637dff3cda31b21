"""The one image loader: a path in, a float32 grayscale image in [0, 1] (H x W) out.

Training, EDA and inference all read pixels through :func:`load_image`, so an image is
decoded the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CxrDeviceError


class ImageReadError(CxrDeviceError):
    """A file could not be decoded as an image; the message names the file and the problem."""


def load_image(path: str | Path) -> np.ndarray:
    """Decode PNG (8/16-bit; gray, RGB, RGBA) or JPEG to float32 grayscale in [0, 1], shape (H, W)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _to_unit_gray(image)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None


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
    if np.issubdtype(array.dtype, np.integer):  # 16-bit PNGs open as I;16 or I
        top = 65535.0 if array.max() > 255 or image.mode.startswith("I;16") else 255.0
        return np.clip(array.astype(np.float32) / top, 0.0, 1.0)
    return np.clip(array.astype(np.float32), 0.0, 1.0)
