"""The pieces of the training recipe around the loop: learning-rate schedule, loss, weight averaging.

* :func:`make_scheduler`: ``cosine`` anneals once per epoch over ``epochs`` (the original
  recipe, kept bit for bit); ``warmup_cosine`` steps at every optimizer step - a linear warm-up
  over ``warmup_epochs``, then a cosine to zero; ``none`` keeps the learning rate.
* :class:`BCELoss`: binary cross-entropy on one logit, with the class weight of the imbalance
  setting and label smoothing (targets ``y (1 - e) + e / 2``), which keeps a nearly separable
  training set from pushing the logits - and the probabilities the device reports - to the
  extremes.
* :class:`WeightAverage`: an exponential moving average of the weights and batch-norm buffers
  (``ema_decay``), the weights that are validated and saved when it is on.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .train_config import TrainConfig


def steps_per_epoch(n_images: int, config: TrainConfig, world: int = 1) -> int:
    """Optimizer steps in one epoch of ``n_images`` training images (per process)."""
    steps = math.ceil(math.ceil(n_images / world) / config.batch_size)
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   per_epoch_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``config.schedule`` (stepped per step when
    :func:`per_step_schedule`, else per epoch)."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    total = config.epochs * per_epoch_steps
    warmup = min(int(round(config.warmup_epochs * per_epoch_steps)), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def per_step_schedule(config: TrainConfig) -> bool:
    """True when the schedule advances at every optimizer step (else once per epoch)."""
    return config.schedule == "warmup_cosine"


class BCELoss(nn.Module):
    """Class-weighted, optionally label-smoothed binary cross-entropy on logits."""

    def __init__(self, pos_weight: torch.Tensor, smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        targets = labels * (1.0 - self.smoothing) + self.smoothing / 2 if self.smoothing else labels
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)


class WeightAverage:
    """Exponential moving average of a model's weights and buffers, updated after each step."""

    def __init__(self, model: nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = decay

    @property
    def module(self) -> nn.Module:
        """The averaged network (same class and state-dict keys as the trained one)."""
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)
