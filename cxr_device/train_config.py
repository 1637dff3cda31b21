"""The training configuration: one typed object, loadable from YAML, validated at load."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .data import IMBALANCE, Augmentation
from .errors import CxrDeviceError
from .models import ARCHITECTURES, ModelSpec
from .preprocessing import Preprocessing


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved verbatim as ``model/config.yaml``."""

    model: ModelSpec = field(default_factory=ModelSpec)
    augmentation: Augmentation = field(default_factory=Augmentation)
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd (momentum 0.9, nesterov)
    schedule: str = "cosine"  # cosine annealing stepped per epoch over `epochs` | none
    patience: int = 3  # early stopping on validation AUROC
    imbalance: str = "weighted_loss"  # none | weighted_loss | balanced_sampler
    device: str = "auto"  # auto | cuda | cpu
    amp: bool = True  # bf16 autocast where supported (CUDA only)
    workers: int = 2  # data-loader and cache-building processes
    seed: int = 0
    cache_dir: str | None = None  # default: <cohort folder>/../cache
    max_steps_per_epoch: int | None = None  # cap for smoke tests; None = whole epoch

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(image_size=self.image_size)

    def validate(self) -> None:
        self.model.validate()
        checks = [
            (self.image_size >= 32, f"image_size must be at least 32, got {self.image_size}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, got {self.optimizer!r}"),
            (self.schedule in ("cosine", "none"), f"schedule must be cosine or none, got {self.schedule!r}"),
            (self.imbalance in IMBALANCE, f"imbalance must be one of {', '.join(IMBALANCE)}, got {self.imbalance!r}"),
            (self.device in ("auto", "cuda", "cpu"), f"device must be auto, cuda or cpu, got {self.device!r}"),
            (self.patience >= 1, f"patience must be at least 1, got {self.patience}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CxrDeviceError(message)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["preprocessing"] = self.preprocessing.as_dict()
        return out

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A copy with the given top-level or ``model.*``/``augmentation.*`` keys changed (None = keep)."""
        model = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("model.") and v is not None}
        top = {k: v for k, v in changes.items() if "." not in k and v is not None}
        return replace(self, model=replace(self.model, **model), **top)


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a YAML config (keys as in :class:`TrainConfig`); unknown keys are errors naming them."""
    if path is None:
        return TrainConfig()
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise CxrDeviceError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise CxrDeviceError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(document, dict):
        raise CxrDeviceError(f"{path}: expected a mapping of training settings")
    return config_from_dict(document.get("train", document), str(path))  # a run config keeps them under train:


def config_from_dict(document: dict, where: str) -> TrainConfig:
    """A validated :class:`TrainConfig` from a mapping; ``where`` prefixes every error message."""
    document = dict(document)
    model = document.pop("model", None) or {}
    augmentation = document.pop("augmentation", None) or {}
    derived = document.pop("preprocessing", None)  # written for readers; derived from image_size
    _check_keys(where, model, ModelSpec, "model.")
    _check_keys(where, augmentation, Augmentation, "augmentation.")
    _check_keys(where, document, TrainConfig, "")
    config = TrainConfig(model=ModelSpec(**model), augmentation=Augmentation(**augmentation), **document)
    try:
        config.validate()
    except CxrDeviceError as err:
        raise CxrDeviceError(f"{where}: {err}") from None
    if derived is not None and derived != config.preprocessing.as_dict():
        raise CxrDeviceError(f"{where}: 'preprocessing' {derived} does not follow from image_size "
                             f"{config.image_size}; edit image_size and drop the preprocessing block")
    return config


def _check_keys(where: str, values: dict, cls: type, prefix: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        hint = f"; architectures: {', '.join(ARCHITECTURES)}" if prefix == "model." else ""
        raise CxrDeviceError(f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                             f"allowed: {', '.join(prefix + k for k in sorted(allowed))}{hint}")
