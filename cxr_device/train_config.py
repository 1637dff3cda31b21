"""The training configuration: one typed object, loadable from YAML, validated at load."""
from __future__ import annotations

from dataclasses import asdict, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from pydantic.dataclasses import dataclass

from .data import IMBALANCE, Augmentation
from .errors import CxrDeviceError
from .models import ARCHITECTURES, ModelSpec
from .preprocessing import Preprocessing
from .validated import RANGE, SETTINGS, Seed, build, check_keys, field_names
from .yaml_io import load_yaml

SCHEDULES = ("cosine", "warmup_cosine", "none")


@dataclass(frozen=True, config=SETTINGS)
class TrainConfig:
    """Everything that decides a training run; saved verbatim as ``model/config.yaml``.

    Types and ranges are checked when it is built (pydantic; an out-of-range value is refused
    with the range); :meth:`validate` checks the choices and the settings that depend on each other.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    augmentation: Augmentation = field(default_factory=Augmentation)
    image_size: Annotated[int, Field(ge=32, le=2048), RANGE] = 224
    epochs: Annotated[int, Field(ge=1, le=1000), RANGE] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096), RANGE] = 32
    lr: Annotated[float, Field(gt=0, le=1), RANGE] = 1e-4
    weight_decay: Annotated[float, Field(ge=0, le=1), RANGE] = 1e-4
    optimizer: str = "adamw"  # adamw | sgd (momentum 0.9, nesterov)
    schedule: str = "cosine"  # cosine: annealed per epoch | warmup_cosine: per step, after warmup_epochs | none
    warmup_epochs: Annotated[float, Field(ge=0, le=1000), RANGE] = 0.0  # linear warm-up (warmup_cosine only)
    label_smoothing: Annotated[float, Field(ge=0, lt=0.5), RANGE] = 0.0  # targets y(1 - e) + e/2
    ema_decay: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.0  # exponential moving average of the weights; 0: off
    patience: Annotated[int, Field(ge=1, le=1000), RANGE] = 3  # early stopping on validation AUROC
    imbalance: str = "weighted_loss"  # none | weighted_loss | balanced_sampler
    device: str = "auto"  # auto | cuda | cpu
    amp: bool = True  # bf16 autocast where supported (CUDA only)
    # bf16 autocast and channels-last memory in the CPU's training steps: about twice as fast where
    # the CPU has AVX512-BF16 or AMX (docs/benchmarks.md); it changes the trained weights, so off
    # unless asked; every score (validation, evaluation, the locked device) stays 32-bit
    cpu_bf16: bool = False
    workers: Annotated[int, Field(ge=0, le=256), RANGE] = 2  # data-loader and cache-building processes
    seed: Seed = 0
    cache_dir: str | None = None  # default: <cohort folder>/../cache
    # a cap on the steps of each epoch, for smoke tests; None = the whole epoch
    max_steps_per_epoch: Annotated[int, Field(ge=1, le=10_000_000), RANGE] | None = None

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(image_size=self.image_size)

    def validate(self) -> None:
        """Raise :class:`CxrDeviceError` naming the first setting that cannot work."""
        self.model.validate()
        checks = [
            (self.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.warmup_epochs < self.epochs or self.schedule != "warmup_cosine",
             f"warmup_epochs {self.warmup_epochs:g} leaves no epoch of the {self.epochs} to anneal"),
            (self.imbalance in IMBALANCE, f"imbalance must be one of {', '.join(IMBALANCE)}, got {self.imbalance!r}"),
            (self.device in ("auto", "cuda", "cpu"), f"device must be auto, cuda or cpu, got {self.device!r}"),
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
    document = load_yaml(path, "training config")
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CxrDeviceError(f"{path}: expected a mapping of training settings, got {type(document).__name__}")
    if "train" in document:  # a run config keeps them under train:
        return config_from_dict(document["train"], str(path), "train.")
    return config_from_dict(document, str(path))


def config_from_dict(document: Any, where: str, prefix: str = "") -> TrainConfig:
    """A validated :class:`TrainConfig` from a mapping.

    ``where`` (the file) starts every error message and ``prefix`` (``train.`` in a run config)
    comes before every key it names: ``run.yaml: train.batch_size: Input should be ...``.
    """
    label = f"{where}: {prefix.rstrip('.')}" if prefix else where
    values = check_keys(label, document, field_names(TrainConfig) | {"preprocessing"})
    values["model"] = check_keys(label, values.get("model"), field_names(ModelSpec), "model.",
                                 f"; architectures: {', '.join(ARCHITECTURES)}")
    values["augmentation"] = check_keys(label, values.get("augmentation"), field_names(Augmentation), "augmentation.")
    derived = values.pop("preprocessing", None)  # written for readers; derived from image_size
    config = build(TrainConfig, where, values, prefix)
    try:
        config.validate()
    except CxrDeviceError as err:
        raise CxrDeviceError(f"{label}: {err}") from None
    if derived is not None and derived != config.preprocessing.as_dict():
        raise CxrDeviceError(f"{label}: 'preprocessing' {derived} does not follow from image_size "
                             f"{config.image_size}; edit image_size and drop the preprocessing block")
    return config
