"""The locked model bundle: what the device is, as files whose hashes are checked on load.

``bundle/``::

    model.safetensors   the weights (safetensors: no pickle, no code)
    input_rules.yaml    the DICOM-header rules inputs must pass
    device.json         architecture, preprocessing, threshold and how it was chosen, the
                        sha256 of the training cohort and of every file above, the package
                        version, and ``content_sha256`` - the hash of device.json itself
                        (canonical JSON without that field)

:func:`load_bundle` refuses a bundle with a missing, truncated or altered file, an edited
device.json, an unknown format, or weights that do not fit the declared architecture. The
hashes give integrity against corruption and accidental edits; they are not a signature.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import CxrDeviceError
from .hashing import sha256_file
from .models import DeviceModel, ModelSpec, build_model
from .preprocessing import Preprocessing

FORMAT = "cxr-device-bundle/1"
DEVICE_JSON, WEIGHTS, RULES = "device.json", "model.safetensors", "input_rules.yaml"


class BundleError(CxrDeviceError):
    """The bundle cannot be trusted or used; the message says which file and why."""


@dataclass
class Bundle:
    """A verified, loaded device."""

    folder: Path
    model: DeviceModel
    preprocessing: Preprocessing
    threshold: float
    rules_path: Path
    meta: dict


def _canonical_hash(document: dict) -> str:
    body = {k: v for k, v in document.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_bundle(out_dir: str | Path, model: DeviceModel, preprocessing: Preprocessing, threshold: dict,
                 rules_file: str | Path, cohort_csv: str | Path, extra: dict | None = None) -> Path:
    """Write a bundle; ``threshold`` needs ``value`` and ``rule`` (and may carry its metrics)."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # one metadata key only: safetensors writes its metadata map in hash-randomised order, and a
    # locked file must be byte-identical when the same model is bundled again
    save_file(state, str(out / WEIGHTS), metadata={"format": FORMAT})
    shutil.copyfile(rules_file, out / RULES)
    document = {
        "format": FORMAT,
        "device": "cxr-device pneumonia detector (pneumonia vs no pneumonia on frontal chest radiographs)",
        "architecture": model.layer_report(),  # spec.weights says how training was initialised
        "preprocessing": preprocessing.as_dict(),
        "threshold": threshold,
        "output": "probability of pneumonia; decision 'pneumonia' when probability >= threshold",
        "input_rules": {"file": RULES, "source": str(rules_file)},
        "training_cohort_sha256": sha256_file(cohort_csv),
        "files": {name: sha256_file(out / name) for name in (WEIGHTS, RULES)},
        "package_version": __version__,
        "torch": torch.__version__,
        **(extra or {}),
    }
    document["content_sha256"] = _canonical_hash(document)
    (out / DEVICE_JSON).write_text(json.dumps(document, indent=2) + "\n")
    return out


def load_bundle(folder: str | Path) -> Bundle:
    """Verify every hash, then build the model; raise :class:`BundleError` on any mismatch."""
    folder = Path(folder)
    path = folder / DEVICE_JSON
    if not path.is_file():
        raise BundleError(f"{path}: not found; a bundle is made by `cxr-device evaluate --run RUN`")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err}); the bundle is damaged") from None
    if document.get("format") != FORMAT:
        raise BundleError(f"{path}: format {document.get('format')!r} is not {FORMAT!r}")
    if document.get("content_sha256") != _canonical_hash(document):
        raise BundleError(f"{path}: content hash does not match: device.json was edited after the bundle was locked")
    for name, expected in document["files"].items():
        file = folder / name
        if not file.is_file():
            raise BundleError(f"{file}: missing from the bundle")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(f"{file}: sha256 {actual[:16]}... does not match the locked {expected[:16]}...: "
                              "the file was altered or truncated")
    spec = ModelSpec(**{**document["architecture"]["spec"], "weights": "none"})
    model = build_model(spec)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    except (RuntimeError, ValueError) as err:
        raise BundleError(f"{folder / WEIGHTS}: weights do not fit {spec.arch} ({str(err).splitlines()[0]})") from None
    pre = document["preprocessing"]
    preprocessing = Preprocessing(**{k: v for k, v in pre.items() if k != "stored_size"})
    return Bundle(folder, model.eval(), preprocessing, float(document["threshold"]["value"]), folder / RULES, document)
