"""Datasets over a cohort, augmentation for chest radiographs, and class-imbalance handling.

Augmentation (training split only; validation and test get the plain centre crop of
:func:`cxr_device.preprocessing.to_tensor`): a random crop inside the stored margin (shifts) or,
with ``resized_crop_scale``, a random resized crop (a random area of the stored image, aspect
0.9-1.1, resized to the input); small rotations, mild zoom and shift, brightness and contrast,
and optionally a random gamma (the contrast curve of a different detector or window). No
vertical flip ever; the
horizontal flip is off by default because chest anatomy is lateralised (the heart is on the
left), and a flipped film is a different, implausible image.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from pydantic.dataclasses import dataclass
from torch.utils.data import Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from .errors import CxrDeviceError
from .imageio import load_image
from .preprocessing import Preprocessing, center_crop, crop_view, normalise, to_stored
from .validated import RANGE, SETTINGS

IMBALANCE = ("none", "weighted_loss", "balanced_sampler")


@dataclass(frozen=True, config=SETTINGS)
class Augmentation:
    """Training-time augmentation; recorded in the run and described in the documents."""

    rotation_degrees: Annotated[float, Field(ge=0, le=180), RANGE] = 7.0
    translate: Annotated[float, Field(ge=0, le=1), RANGE] = 0.04  # fraction of the image, each direction (+ crop)
    zoom: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.05  # scale in [1 - zoom, 1 + zoom]
    brightness: Annotated[float, Field(ge=0, le=1), RANGE] = 0.1  # factor in [1 - brightness, 1 + brightness]
    contrast: Annotated[float, Field(ge=0, le=1), RANGE] = 0.1
    horizontal_flip: bool = False
    resized_crop_scale: Annotated[float, Field(gt=0, le=1), RANGE] | None = None  # least area kept; None: plain crop
    gamma: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.0  # gamma drawn from [1 - gamma, 1 + gamma]

    def as_dict(self) -> dict:
        crop = ("inside the stored margin" if self.resized_crop_scale is None else
                f"random resized crop: {self.resized_crop_scale:g}-1 of the area, aspect {RESIZED_CROP_RATIO[0]:g}-"
                f"{RESIZED_CROP_RATIO[1]:g}")
        return {**asdict(self), "vertical_flip": False, "random_crop": crop}

    def transform(self, pre: Preprocessing) -> v2.Compose:
        crop = v2.RandomCrop(pre.image_size) if self.resized_crop_scale is None else v2.RandomResizedCrop(
            pre.image_size, scale=(self.resized_crop_scale, 1.0), ratio=RESIZED_CROP_RATIO, antialias=True)
        steps = [
            crop,
            v2.RandomAffine(degrees=self.rotation_degrees, translate=(self.translate, self.translate),
                            scale=(1 - self.zoom, 1 + self.zoom)),
            v2.ColorJitter(brightness=self.brightness, contrast=self.contrast),
        ]
        if self.gamma:
            steps.append(RandomGamma(self.gamma))
        if self.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)


RESIZED_CROP_RATIO = (0.9, 1.1)


class RandomGamma(torch.nn.Module):
    """``x -> x ** g`` on [0, 1] intensities, ``g`` uniform in ``[1 - spread, 1 + spread]`` (torch's RNG)."""

    def __init__(self, spread: float):
        super().__init__()
        self.spread = spread

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        gamma = 1.0 + (2 * torch.rand(()).item() - 1) * self.spread
        return v2.functional.adjust_gamma(image, gamma)


class CachedImages(Dataset):
    """Images served from the decoded-pixel cache: (float32 (1, H, W), float label); with
    ``views`` (evaluation with test-time views) the normalised views, (V, 1, H, W)."""

    def __init__(self, pixels: np.ndarray, rows: np.ndarray, labels: np.ndarray, pre: Preprocessing,
                 augmentation: Augmentation | None = None, views: tuple[str, ...] | None = None):
        self.pixels, self.rows, self.labels, self.pre = pixels, rows, labels.astype(np.float32), pre
        self.transform = augmentation.transform(pre) if augmentation else None
        self.views = views

    def __len__(self) -> int:
        return len(self.rows)

    def stored(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.pixels[self.rows[i]])).unsqueeze(0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        stored = self.stored(i)
        if self.views:
            views = torch.stack([normalise(crop_view(stored, self.pre.image_size, v), self.pre) for v in self.views])
            return views, torch.tensor(self.labels[i])
        pixels = self.transform(stored) if self.transform else center_crop(stored, self.pre.image_size)
        return normalise(pixels, self.pre), torch.tensor(self.labels[i])


class DecodedImages(CachedImages):
    """The naive pipeline: decode and resize the file on every access (for benchmarks)."""

    def __init__(self, paths: list[str], labels: np.ndarray, pre: Preprocessing,
                 augmentation: Augmentation | None = None):
        super().__init__(np.empty(0), np.arange(len(paths)), labels, pre, augmentation)
        self.paths = paths

    def stored(self, i: int) -> torch.Tensor:
        return torch.from_numpy(to_stored(load_image(self.paths[i]), self.pre)).unsqueeze(0)


def positive_weight(labels: np.ndarray) -> float:
    """negatives / positives: the BCE ``pos_weight`` that balances the classes."""
    positives = float(labels.sum())
    if positives == 0 or positives == len(labels):
        raise CxrDeviceError("the training split needs both classes; check the cohort")
    return (len(labels) - positives) / positives


def balanced_sampler(labels: np.ndarray, seed: int) -> WeightedRandomSampler:
    """Draw both classes equally often (with replacement), seeded."""
    weights = np.where(labels == 1, 1.0 / labels.sum(), 1.0 / (len(labels) - labels.sum()))
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(labels), generator=generator)
