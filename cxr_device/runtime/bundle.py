"""The locked bundle: what the device is, as files whose hashes (and signature) are checked on load.

``bundle/``::

    model.safetensors   the weights (safetensors: no pickle, no code); an ensemble adds
                        model-1.safetensors, model-2.safetensors, ... (same architecture)
    input_rules.yaml    the DICOM-header rules inputs must pass (parsed when locked and loaded)
    device.json         architecture, preprocessing, threshold and how it was chosen, the
                        sha256 of the training cohort and of every file above, the package
                        version, and ``content_sha256`` - the hash of device.json itself
                        (canonical JSON without that field)
    signature.json      optional: an Ed25519 signature of device.json (``cxr-device sign``)

``device.json`` ``inference`` says how an input is scored: ``members`` (how many weight files) and
``views`` (the test-time crops of the stored image, :data:`cxr_device.preprocessing.VIEW_SETS`);
the logits of every member on every view are averaged, then calibrated. Without it: one member,
the centre crop.

What the two layers protect against, plainly:

* **Hashes (every bundle).** A truncated, corrupted or accidentally edited file is refused. They
  do *not* stop a deliberate forgery: whoever can write the folder can change the threshold or
  swap the weights and recompute every hash.
* **Signature (signed bundles, verified against a key the site pins).** device.json lists the
  sha256 of every other file, so a valid signature of device.json by the pinned key proves that
  the whole bundle is the one the key holder locked. A site that pins a key refuses unsigned and
  wrongly signed bundles. The signature cannot protect against a stolen private key.

:func:`load_bundle` validates device.json field by field (pydantic), refuses file entries that
are not plain names of this bundle, symbolic links, a threshold that is not a finite number in
[0, 1], weights that are not safetensors or do not fit the declared architecture, and a rules
file that does not parse.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import CxrDeviceError
from ..hashing import sha256_file
from ..models import DeviceModel, ModelSpec, build_model
from ..preprocessing import Preprocessing
from ..run_layout import DEVICE_JSON, RULES, SIGNATURE, WEIGHTS
from ..validated import describe_errors
from .calibration import Calibration
from .input_rules import RulesError, RuleSet, load_rules
from .signing import SignatureStatus, verify_bundle_signature

FORMAT = "cxr-device-bundle/1"
MAX_MEMBERS = 8
#: Every file a bundle may hold; nothing else is written, hashed or read.
BUNDLE_FILES = (DEVICE_JSON, WEIGHTS, *(f"model-{i}.safetensors" for i in range(1, MAX_MEMBERS)), RULES, SIGNATURE)
HASHED_FILES = (WEIGHTS, RULES)
COMBINE = "mean of the logits over members and views, before calibration"


def weight_files(members: int) -> tuple[str, ...]:
    """The weight files of an ensemble of ``members`` models (``model.safetensors`` first)."""
    return (WEIGHTS, *(f"model-{i}.safetensors" for i in range(1, members)))


def hashed_files(members: int) -> tuple[str, ...]:
    """The files device.json hashes for ``members`` models."""
    return (*weight_files(members), RULES)


class BundleError(CxrDeviceError):
    """The bundle cannot be trusted or used; the message says which file and why."""


# --- device.json, typed ---------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Threshold(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    value: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    rule: str


class _Spec(_Strict):
    arch: str
    weights: str
    freeze: str
    head_hidden: int = Field(ge=0)
    dropout: float = Field(ge=0.0, lt=1.0)


class _Architecture(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    spec: _Spec


class _Preprocessing(_Strict):
    image_size: int = Field(ge=8, le=4096)
    margin: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    mean: float = Field(allow_inf_nan=False)
    std: float = Field(gt=0.0, allow_inf_nan=False)
    resize: str
    stored_size: int


class _Calibration(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    method: Literal["platt", "temperature", "none"]
    slope: float = Field(gt=0.0, allow_inf_nan=False)
    offset: float = Field(allow_inf_nan=False)


class _Inference(_Strict):
    members: int = Field(ge=1, le=MAX_MEMBERS)
    views: list[Literal["center", "top_left", "top_right", "bottom_left", "bottom_right"]] = Field(min_length=1)
    combine: str


class _DeviceDocument(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    format: Literal["cxr-device-bundle/1"]
    architecture: _Architecture
    preprocessing: _Preprocessing
    threshold: _Threshold
    calibration: _Calibration = _Calibration(method="none", slope=1.0, offset=0.0)
    inference: _Inference = _Inference(members=1, views=["center"], combine=COMBINE)
    files: dict[str, str]
    content_sha256: str

    @model_validator(mode="after")
    def _known_files(self) -> _DeviceDocument:
        files, expected = self.files, hashed_files(self.inference.members)
        if set(files) != set(expected):
            raise ValueError(f"files must list exactly {', '.join(expected)} (plain names inside the bundle); "
                             f"got {', '.join(map(repr, files)) or 'nothing'}")
        bad = [name for name, digest in files.items()
               if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)]
        if bad:
            raise ValueError(f"sha256 of {', '.join(bad)} is not 64 lower-case hex digits")
        return self


@dataclass
class Bundle:
    """A verified, loaded device: its first model (``model``), every member of an ensemble
    (``models``) and the test-time views (``views``)."""

    folder: Path
    model: DeviceModel
    preprocessing: Preprocessing
    threshold: float
    rules: RuleSet
    meta: dict
    signature: SignatureStatus
    calibration: Calibration = Calibration()
    models: list[DeviceModel] = field(default_factory=list)
    views: tuple[str, ...] = ("center",)

    def __post_init__(self) -> None:
        self.models = self.models or [self.model]

    @property
    def rules_path(self) -> Path:
        return self.folder / RULES

    @property
    def device_sha256(self) -> str:
        """sha256 of device.json's bytes: the one identifier of this locked device."""
        return sha256_file(self.folder / DEVICE_JSON)


def canonical_hash(document: dict) -> str:
    """sha256 of the canonical JSON of ``document`` without its ``content_sha256`` field."""
    body = {k: v for k, v in document.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- writing --------------------------------------------------------------------------------
def write_bundle(out_dir: str | Path, model: DeviceModel | list[DeviceModel], preprocessing: Preprocessing,
                 threshold: dict, rules_file: str | Path, cohort_csv: str | Path, extra: dict | None = None,
                 calibration: Calibration = Calibration(), views: tuple[str, ...] = ("center",)) -> Path:
    """Lock a bundle; ``threshold`` needs ``value`` and ``rule`` (and may carry its metrics);
    ``threshold.value`` applies to the probability after ``calibration``. ``model`` may be a list
    (an ensemble of one architecture); ``views`` are the test-time crops averaged with it.

    The rules are parsed first (a broken rules file is never locked). An existing folder is
    reused only if it holds nothing but bundle files; those are replaced (a signature of the
    previous lock is removed: it no longer matches). Nothing else is ever deleted.
    """
    out = Path(out_dir)
    try:
        load_rules(rules_file)
    except RulesError as err:
        raise BundleError(f"not locking a bundle with unusable input rules: {err}") from None
    models = model if isinstance(model, list) else [model]
    if not 1 <= len(models) <= MAX_MEMBERS:
        raise BundleError(f"an ensemble has 1 to {MAX_MEMBERS} members, got {len(models)}")
    _prepare_folder(out)
    for name, member in zip(weight_files(len(models)), models):
        state = {k: v.detach().cpu().contiguous() for k, v in member.state_dict().items()}
        # one metadata key only: safetensors writes its metadata map in hash-randomised order, and a
        # locked file must be byte-identical when the same model is bundled again
        save_file(state, str(out / name), metadata={"format": FORMAT})
    (out / RULES).write_bytes(Path(rules_file).read_bytes())
    document = {
        "format": FORMAT,
        "device": "cxr-device pneumonia detector (pneumonia vs no pneumonia on frontal chest radiographs)",
        "architecture": models[0].layer_report(),  # spec.weights says how training was initialised
        "preprocessing": preprocessing.as_dict(),
        "calibration": calibration.as_dict(),
        "threshold": threshold,
        "output": "calibrated probability of pneumonia, sigmoid(calibration.slope * logit + calibration.offset); "
                  "decision 'pneumonia' when probability >= threshold",
        "input_rules": {"file": RULES, "source": str(rules_file)},
        "training_cohort_sha256": sha256_file(cohort_csv),
        "files": {name: sha256_file(out / name) for name in hashed_files(len(models))},
        "package_version": __version__,
        "torch": torch.__version__,
        **(extra or {}),
    }
    if len(models) > 1 or tuple(views) != ("center",):  # a single centre-cropped model keeps the plain form
        document["inference"] = {"members": len(models), "views": list(views), "combine": COMBINE}
    document["content_sha256"] = canonical_hash(document)
    _validated(document, out / DEVICE_JSON)  # never write what load_bundle would refuse
    (out / DEVICE_JSON).write_text(json.dumps(document, indent=2) + "\n")
    return out


def _prepare_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a folder; choose another bundle location")
    if out.is_dir() and any(out.iterdir()):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES)
        if foreign or not _locked_here(out / DEVICE_JSON):
            what = f"files that are not part of a bundle ({', '.join(foreign[:5])})" if foreign else \
                f"no {DEVICE_JSON} of a bundle this tool locked"
            raise BundleError(f"{out}: holds {what}; nothing was changed - move them or choose another location")
        for name in BUNDLE_FILES:  # a previous lock's files (a stale signature.json would no longer match);
            (out / name).unlink(missing_ok=True)  # links are removed, never written through
    out.mkdir(parents=True, exist_ok=True)


def _locked_here(path: Path) -> bool:
    """True when ``path`` is the device.json of a bundle this tool wrote (its format string)."""
    try:
        return not path.is_symlink() and json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# --- loading --------------------------------------------------------------------------------
def load_bundle(folder: str | Path, trusted_key: str | Path | None = None, environment_key: bool = True) -> Bundle:
    """Verify the signature (when a key is pinned: ``trusted_key``, else - when
    ``environment_key`` - ``$CXR_DEVICE_TRUSTED_KEY``), every hash and every field, then build
    the model; raise :class:`BundleError` (or :class:`SignatureError`) naming the file and the
    problem."""
    folder = Path(folder)
    path = folder / DEVICE_JSON
    _plain_file(path, "not found; a bundle is made by `cxr-device evaluate --run RUN`")
    try:
        raw = path.read_bytes()
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BundleError(f"{path}: not valid JSON ({err}); the bundle is damaged") from None
    if not isinstance(document, dict):
        raise BundleError(f"{path}: expected a JSON object; the bundle is damaged")
    signature = verify_bundle_signature(folder, raw, trusted_key, environment_key)
    if document.get("format") != FORMAT:
        raise BundleError(f"{path}: format {document.get('format')!r} is not {FORMAT!r}")
    if document.get("content_sha256") != canonical_hash(document):
        raise BundleError(f"{path}: content hash does not match: device.json was edited after the bundle was locked")
    doc = _validated(document, path)
    for name, expected in doc.files.items():
        file = folder / name
        _plain_file(file, "missing from the bundle")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(f"{file}: sha256 {actual[:16]}... does not match the locked {expected[:16]}...: "
                              "the file was altered or truncated")
    try:
        rules = load_rules(folder / RULES)
    except RulesError as err:
        raise BundleError(f"the bundle's input rules cannot be used: {err}") from None
    spec = ModelSpec(**{**doc.architecture.spec.model_dump(), "weights": "none"})
    models = [_load_member(folder / name, spec, path) for name in weight_files(doc.inference.members)]
    pre = doc.preprocessing.model_dump()
    preprocessing = Preprocessing(**{k: v for k, v in pre.items() if k != "stored_size"})
    if preprocessing.stored_size != pre["stored_size"]:
        raise BundleError(f"{path}: preprocessing.stored_size {pre['stored_size']} does not follow from "
                          f"image_size {preprocessing.image_size} and margin {preprocessing.margin}")
    calibration = Calibration(doc.calibration.method, doc.calibration.slope, doc.calibration.offset)
    return Bundle(folder, models[0], preprocessing, doc.threshold.value, rules, document, signature, calibration,
                  models, tuple(doc.inference.views))


def _load_member(weights: Path, spec: ModelSpec, device_json: Path) -> DeviceModel:
    """One member's model from its safetensors file, in evaluation mode."""
    try:
        model = build_model(spec)
        model.load_state_dict(load_file(str(weights)), strict=True)
    except CxrDeviceError as err:
        raise BundleError(f"{device_json}: architecture: {err}") from None
    except Exception as err:  # safetensors' own errors (a pickle renamed, a bad header) and shape mismatches
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise BundleError(f"{weights}: not safetensors weights that fit {spec.arch} ({first})") from None
    return model.eval()


def _plain_file(path: Path, missing: str) -> None:
    """A regular file inside its folder, not a link (a link could point anywhere)."""
    if path.is_symlink():
        raise BundleError(f"{path}: is a symbolic link; a bundle holds its own files only")
    if not path.is_file():
        raise BundleError(f"{path}: {missing}")


def _validated(document: dict[str, Any], path: Path) -> _DeviceDocument:
    try:
        return _DeviceDocument.model_validate(document)
    except ValidationError as err:
        raise BundleError(f"{path}: {describe_errors(err)}") from None
