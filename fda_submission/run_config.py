"""The run configuration: one YAML for the whole pipeline, validated when it is loaded.

Sections and their keys (every CLI flag of the steps has one)::

    name: demo                     # run folder runs/<name> unless --out is given
    seed: 0                        # default seed of every step
    data:                          # cxr-device cohort (and, for demos, synth)
      metadata | folders | images | metadata_only | min_age | max_age | sexes | views | split |
      val_fraction | test_fraction | train_val_list | test_list | class_cap | balance_train |
      val_prevalence | seed
      synthetic: {n_patients, image_size, prevalence}   # generate data into RUN/data first
    eda: {pixel_sample, seed}
    train: {...}                   # the keys of cxr-device train's --config (model:, augmentation:, ...)
    evaluate: {bootstrap, seed, target_sensitivity, rules}
    submission: {profile, formats, junit}

Relative paths are resolved against the folder of the YAML file.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cxr_device.cohort import CohortSettings
from cxr_device.errors import CxrDeviceError
from cxr_device.filters import Filters
from cxr_device.synth import SynthSettings
from cxr_device.train_config import config_from_dict

SECTIONS = {"name", "seed", "data", "eda", "train", "evaluate", "submission"}
DATA_KEYS = {"metadata", "folders", "images", "metadata_only", "min_age", "max_age", "sexes", "views", "split",
             "val_fraction", "test_fraction", "train_val_list", "test_list", "class_cap", "balance_train",
             "val_prevalence", "seed", "synthetic"}
PATH_KEYS = {"metadata", "folders", "train_val_list", "test_list"}
EDA_KEYS = {"pixel_sample", "seed"}
EVALUATE_KEYS = {"bootstrap", "seed", "target_sensitivity", "rules"}
SUBMISSION_KEYS = {"profile", "formats", "junit"}


@dataclass
class RunConfig:
    """The resolved configuration of a run."""

    name: str
    seed: int
    cohort: CohortSettings
    synthetic: SynthSettings | None
    eda: dict
    train: dict  # TrainConfig keys (validated by TrainConfig when the step runs, and at load below)
    evaluate: dict
    submission: dict
    source: str = ""
    raw: dict = field(default_factory=dict)


def _check(where: str, values: Any, allowed: set[str]) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CxrDeviceError(f"{where}: expected a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise CxrDeviceError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return dict(values)


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run YAML; errors name the file, the key and the allowed keys."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CxrDeviceError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise CxrDeviceError(f"{path}: not valid YAML ({err})") from None
    top = _check(str(path), document, SECTIONS)
    base = path.resolve().parent
    seed = int(top.get("seed", 0))
    data = _check(f"{path}: data", top.get("data"), DATA_KEYS)
    synthetic = None
    if "synthetic" in data:
        spec = _check(f"{path}: data.synthetic", data.pop("synthetic"), {f.name for f in fields(SynthSettings)})
        synthetic = SynthSettings(**{"seed": seed, **spec})
        _validated(path, "data.synthetic", synthetic.validate)
    for key in PATH_KEYS & set(data):
        if data[key]:
            data[key] = str((base / data[key]).resolve())
    images = [str((base / p).resolve()) for p in data.pop("images", []) or []]
    sexes, views = data.pop("sexes", None), data.pop("views", None)
    filters = Filters(data.pop("min_age", None), data.pop("max_age", None),
                      tuple(str(x).upper() for x in sexes) if sexes else None,
                      tuple(str(x).upper() for x in views) if views else None)
    cohort = CohortSettings(images=tuple(images), filters=filters, **{"seed": seed, **data})
    if synthetic is None:
        _validated(path, "data", cohort.validate)
    train = {"seed": seed, **(top.get("train") or {})}
    config_from_dict(train, f"{path}: train")  # fails at load, not after the cohort step
    evaluate = {"bootstrap": 2000, "seed": seed, "target_sensitivity": 0.9, "rules": None,
                **_check(f"{path}: evaluate", top.get("evaluate"), EVALUATE_KEYS)}
    if evaluate["rules"]:
        evaluate["rules"] = str((base / evaluate["rules"]).resolve())
    submission = {"profile": None, "formats": ["md", "html"], "junit": None,
                  **_check(f"{path}: submission", top.get("submission"), SUBMISSION_KEYS)}
    for key in ("profile", "junit"):
        if submission[key]:
            submission[key] = str((base / submission[key]).resolve())
    eda = {"pixel_sample": 100, "seed": seed, **_check(f"{path}: eda", top.get("eda"), EDA_KEYS)}
    return RunConfig(name=str(top.get("name") or path.stem), seed=seed, cohort=cohort, synthetic=synthetic, eda=eda,
                     train=train, evaluate=evaluate, submission=submission, source=str(path), raw=document)


def _validated(path: Path, section: str, check) -> None:
    try:
        check()
    except CxrDeviceError as err:
        raise CxrDeviceError(f"{path}: {section}: {err}") from None
