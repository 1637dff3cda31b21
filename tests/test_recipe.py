"""The training recipe: warm-up schedule, label smoothing, weight averaging, radiograph augmentation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cxr_device.data import Augmentation, CachedImages
from cxr_device.models import ModelSpec
from cxr_device.preprocessing import Preprocessing
from cxr_device.recipe import BCELoss, make_scheduler, steps_per_epoch
from cxr_device.train_config import TrainConfig
from cxr_device.training import train

from .test_training import cohort_dir  # noqa: F401 - the module-scoped cohort fixture

RECIPE = TrainConfig(model=ModelSpec(arch="small_cnn"), image_size=32, epochs=3, batch_size=8, lr=1e-3, workers=0,
                     schedule="warmup_cosine", warmup_epochs=1, label_smoothing=0.1, ema_decay=0.9,
                     augmentation=Augmentation(resized_crop_scale=0.7, gamma=0.2))


def test_warmup_then_cosine_per_step():
    config = TrainConfig(epochs=4, batch_size=10, lr=1.0, schedule="warmup_cosine", warmup_epochs=1)
    per_epoch = steps_per_epoch(95, config)
    assert per_epoch == 10
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, config, per_epoch)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warm-up over one epoch
    assert rates[10] == pytest.approx(1.0) and rates[25] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] < 0.01


def test_label_smoothing_moves_the_targets_off_zero_and_one():
    logits, labels = torch.tensor([3.0, -2.0, 0.5]), torch.tensor([1.0, 0.0, 1.0])
    weight = torch.tensor(0.35)
    smoothed = BCELoss(weight, 0.1)(logits, labels)
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([0.95, 0.05, 0.95]), pos_weight=weight)
    assert smoothed.item() == pytest.approx(expected.item())
    assert BCELoss(weight)(logits, labels).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight).item())


def test_augmentation_keeps_size_dtype_and_is_seeded():
    pre = Preprocessing(image_size=32)
    pixels = np.random.default_rng(0).integers(0, 255, (4, pre.stored_size, pre.stored_size), dtype=np.uint8)
    data = CachedImages(pixels, np.arange(4), np.zeros(4), pre, Augmentation(resized_crop_scale=0.7, gamma=0.3))
    torch.manual_seed(1)
    first = data[0][0]
    torch.manual_seed(1)
    again = data[0][0]
    assert first.shape == (1, 32, 32) and first.dtype == torch.float32 and torch.equal(first, again)
    described = Augmentation(resized_crop_scale=0.7).as_dict()
    assert described["vertical_flip"] is False and "random resized crop" in described["random_crop"]


@pytest.mark.requirement("REQ-TRAIN-001")
def test_the_recipe_resumes_exactly_and_saves_the_averaged_weights(cohort_dir, tmp_path, kill_training):  # noqa: F811
    whole = train(cohort_dir, tmp_path / "whole", RECIPE, progress=False)
    arm, disarm = kill_training
    arm(2)
    with pytest.raises(KeyboardInterrupt):
        train(cohort_dir, tmp_path / "cut", RECIPE, progress=False)
    disarm()
    resumed = train(cohort_dir, tmp_path / "cut", RECIPE, resume=True, progress=False)
    assert resumed.history["train_loss"].tolist() == whole.history["train_loss"].tolist()
    assert resumed.history["val_auroc"].tolist() == whole.history["val_auroc"].tolist()



def test_best_checkpoint_holds_the_averaged_weights(cohort_dir, tmp_path):  # noqa: F811
    train(cohort_dir, tmp_path, RECIPE.with_overrides(epochs=1, warmup_epochs=0), progress=False)
    best = torch.load(tmp_path / "model" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "model" / "last.pt", weights_only=True)
    assert set(best["model"]) == set(last["model"]) and best["epoch"] == last["epoch"] == 0
    for key in best["model"]:
        assert torch.equal(best["model"][key], last["ema"]["module." + key]), key
    weights = [k for k in best["model"] if k.endswith("weight")]
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in weights)  # not the raw weights
