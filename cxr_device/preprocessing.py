"""The one preprocessing, shared unchanged by training, evaluation and inference.

An image goes through two stages:

1. :func:`to_stored` - float32 [0, 1] (H, W) from :func:`cxr_device.imageio.load_image` ->
   square resize to ``stored_size`` (``image_size`` plus a margin for crops; antialiased
   bilinear) -> uint8. This is exactly what the decoded-pixel cache stores, so cached and
   uncached paths give the same bytes.
2. :func:`to_tensor` - uint8 (S, S) -> centre crop to ``image_size`` -> float in [0, 1] ->
   ``(x - mean) / std`` -> tensor (1, image_size, image_size). Training replaces the centre
   crop with the augmentations of :class:`cxr_device.data.Augmentation`; everything else is identical.

The image stays single-channel: models adapt their first convolution to one channel (see
:mod:`cxr_device.models`), which equals replicating the gray channel into RGB.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

#: Gray normalisation: the means of ImageNet's per-channel mean and std.
GRAY_MEAN = 0.449
GRAY_STD = 0.226


@dataclass(frozen=True)
class Preprocessing:
    """Everything that decides how pixels become a model input; recorded in every run and bundle."""

    image_size: int = 224
    margin: float = 0.125  # stored_size = image_size * (1 + margin), room for random crops
    mean: float = GRAY_MEAN
    std: float = GRAY_STD
    resize: str = "square, antialiased bilinear"

    @property
    def stored_size(self) -> int:
        return int(round(self.image_size * (1 + self.margin)))

    def as_dict(self) -> dict:
        return {**asdict(self), "stored_size": self.stored_size}


def to_stored(image: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """float32 [0, 1] (H, W) -> uint8 (stored_size, stored_size): what the cache holds."""
    size = pre.stored_size
    resized = Image.fromarray(np.asarray(image, dtype=np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR)
    return np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)


def center_crop(stored: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central ``size`` x ``size`` window of a (..., S, S) tensor."""
    top = (stored.shape[-2] - size) // 2
    left = (stored.shape[-1] - size) // 2
    return stored[..., top:top + size, left:left + size]


def normalise(pixels: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """uint8 (or float in [0, 255]) tensor -> float32 ``(x / 255 - mean) / std``."""
    return (pixels.float() / 255.0 - pre.mean) / pre.std


def to_tensor(stored: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """uint8 (S, S) -> float32 (1, image_size, image_size): the evaluation/inference input."""
    pixels = torch.from_numpy(np.ascontiguousarray(stored)).unsqueeze(0)
    return normalise(center_crop(pixels, pre.image_size), pre)


#: Test-time views of the stored image: the centre crop (what evaluation and inference use without
#: test-time augmentation) and the four corner crops of the stored margin ("five_crop").
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "none": ("center",),
    "five_crop": ("center", "top_left", "top_right", "bottom_left", "bottom_right"),
}


def crop_view(stored: torch.Tensor, size: int, view: str) -> torch.Tensor:
    """The ``size`` x ``size`` window named ``view`` of a (..., S, S) tensor."""
    if view == "center":
        return center_crop(stored, size)
    height, width = stored.shape[-2], stored.shape[-1]
    top = 0 if view.startswith("top") else height - size
    left = 0 if view.endswith("left") else width - size
    if view not in VIEW_SETS["five_crop"]:
        raise ValueError(f"unknown view {view!r}; views: {', '.join(VIEW_SETS['five_crop'])}")
    return stored[..., top:top + size, left:left + size]


def to_views(stored: np.ndarray, pre: Preprocessing, views: tuple[str, ...] = ("center",)) -> torch.Tensor:
    """uint8 (S, S) -> float32 (V, 1, image_size, image_size): the normalised views of one image."""
    pixels = torch.from_numpy(np.ascontiguousarray(stored)).unsqueeze(0)
    return torch.stack([normalise(crop_view(pixels, pre.image_size, v), pre) for v in views])
