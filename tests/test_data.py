"""Datasets and augmentation: evaluation inputs are exactly the shared preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from cxr_device.data import (
    Augmentation,
    CachedImages,
    DecodedImages,
    balanced_sampler,
    positive_weight,
)
from cxr_device.errors import CxrDeviceError
from cxr_device.preprocessing import Preprocessing, to_stored, to_tensor

PRE = Preprocessing(image_size=32)
RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (4, PRE.stored_size, PRE.stored_size), dtype=np.uint8)
LABELS = np.array([0, 1, 0, 1])


def test_evaluation_items_are_the_shared_preprocessing_and_never_augmented():
    dataset = CachedImages(PIXELS, np.arange(4), LABELS, PRE)
    for i in range(4):
        image, label = dataset[i]
        assert image.shape == (1, 32, 32) and label.item() == LABELS[i]
        torch.testing.assert_close(image, to_tensor(PIXELS[i], PRE))
        torch.testing.assert_close(dataset[i][0], image)  # same every time


def test_training_items_are_augmented_within_bounds():
    dataset = CachedImages(PIXELS, np.arange(4), LABELS, PRE, Augmentation())
    torch.manual_seed(0)
    a, b = dataset[0][0], dataset[0][0]
    assert a.shape == (1, 32, 32) and not torch.equal(a, b)
    low, high = (0 - PRE.mean) / PRE.std, (1 - PRE.mean) / PRE.std
    assert a.min() >= low - 1e-5 and a.max() <= high + 1e-5


def test_no_vertical_flip_and_horizontal_flip_only_when_asked():
    flips = (v2.RandomVerticalFlip, v2.RandomHorizontalFlip)
    default = Augmentation().transform(PRE).transforms
    assert not any(isinstance(t, flips) for t in default)
    with_flip = Augmentation(horizontal_flip=True).transform(PRE).transforms
    assert [type(t) for t in with_flip if isinstance(t, flips)] == [v2.RandomHorizontalFlip]
    assert Augmentation().as_dict()["vertical_flip"] is False


def test_decoded_images_match_the_cache_path(tmp_path):
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(RNG.integers(0, 256, (80, 60), dtype=np.uint8)).save(path)
    decoded = DecodedImages([str(path)], np.array([1]), PRE)
    from cxr_device.imageio import load_image

    stored = to_stored(load_image(path), PRE)
    torch.testing.assert_close(decoded[0][0], to_tensor(stored, PRE))


def test_imbalance_helpers():
    labels = np.array([1] * 10 + [0] * 90)
    assert positive_weight(labels) == 9.0
    with pytest.raises(CxrDeviceError, match="both classes"):
        positive_weight(np.zeros(5))
    draws = np.array(list(balanced_sampler(labels, seed=0)))
    assert 0.4 < labels[draws].mean() < 0.6
    assert np.array_equal(draws, np.array(list(balanced_sampler(labels, seed=0))))
