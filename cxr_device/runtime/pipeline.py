"""The device runtime: one input in, a checked decision out - or a refusal that says why.

An input is a path, the bytes of a DICOM file, or a ``pydicom.Dataset``. A DICOM is parsed
once: the bundle's own header rules run on that dataset and, when they pass, its pixels are
decoded from the same dataset, preprocessed exactly as in training, scored by the locked model
and decided at the locked threshold. A file that fails the rules is ``refused`` with the
findings; one that cannot be read, decoded or trusted (non-finite, constant or empty pixels, a
non-finite model output) is ``unreadable`` with the reason. No probability is computed for
either. PNG/JPEG paths are refused unless ``allow_non_dicom``, and then carry a note that no
header checks were possible. Every input appears once, in input order; no PHI unless
``show_phi``.

With ``keep_datasets``, each result of a DICOM input that could be parsed (accepted, refused,
or unreadable for its pixels) also carries the parsed dataset (:attr:`Prediction.dataset`) and
its patient and study identity as read, byte for byte, before anything converted a value
(:attr:`Prediction.identity`): what the DICOM results
(:mod:`cxr_device.runtime.dicom_results`) copy. Neither is ever part of a report.

A Specific Character Set the device cannot decode refuses the image (rule
``specific-character-set``): its names and identifiers could not be read reliably.

``predict``, ``assess`` and the DICOM node all score through :class:`DevicePipeline`.
"""
from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Union

import numpy as np
import torch
from pydicom.dataset import Dataset

from ..dicom_pixels import DicomReadError, dataset_pixels, read_dataset, source_label
from ..errors import CxrDeviceError
from ..imageio import DICOM_SUFFIXES, is_dicom, load_image
from .bundle import Bundle
from .header_check import FAIL, UNREADABLE, check_dataset, without_label
from .inference import Predictor, save_overlay
from .result_identity import SourceIdentity, charset_problem

ACCEPTED, REFUSED = "accepted", "refused"
CHARSET_RULE = "specific-character-set"
NO_HEADER_NOTE = "not a DICOM: no header checks were possible"
#: What the runtime scores: a file path, the bytes of a DICOM file, or a parsed dataset.
DeviceInput = Union[str, Path, bytes, bytearray, Dataset]


@dataclass
class Prediction:
    """The device's answer for one input, with the identifiers needed to answer in its study."""

    path: str  # the file's path, or how an in-memory input is named
    status: str  # accepted | refused | unreadable
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    probability: float | None = None
    logit: float | None = None  # the device's logit before calibration (the mean over members and views)
    decision: str | None = None
    threshold: float | None = None
    findings: list[dict] = field(default_factory=list)
    reason: str = ""
    note: str = ""
    heatmap: str = ""
    phi: dict = field(default_factory=dict)
    #: The parsed DICOM (``run(..., keep_datasets=True)`` only); never in a report.
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    #: Its patient and study identity as read (``keep_datasets`` only); never in a report.
    identity: SourceIdentity | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """The non-empty fields (status always), for JSON reports; never the dataset or identity."""
        values = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                  if f.name not in ("dataset", "identity")}
        return {k: v for k, v in values.items() if v or k == "status"}


class DevicePipeline:
    """A verified bundle with its input rules parsed and its model ready: build once, reuse
    for every input (what a service keeps in memory)."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu"):
        self.bundle = bundle
        self.rules = bundle.rules
        self.predictor = Predictor(bundle, device)

    def run(self, inputs: list[DeviceInput], allow_non_dicom: bool = False, heatmap_dir: Path | None = None,
            show_phi: bool = False, batch_size: int = 16, keep_datasets: bool = False) -> list[Prediction]:
        """Check, score and explain every input; one :class:`Prediction` per input, in order.
        ``keep_datasets``: hand back each parsed DICOM in :attr:`Prediction.dataset`."""
        results: list[Prediction] = []
        ready: list[tuple[Prediction, torch.Tensor, np.ndarray]] = []
        for source in inputs:
            result, image = self._gate(source, allow_non_dicom, show_phi, keep_datasets)
            if not keep_datasets:
                result.dataset = None
            results.append(result)
            if image is not None:
                tensor, display = self.predictor.prepare_image(image)
                ready.append((result, tensor, display))
        for start in range(0, len(ready), batch_size):
            chunk = ready[start:start + batch_size]
            logits = self.predictor.logits(torch.stack([t for _, t, _ in chunk]))
            probabilities = self.predictor.calibration.probabilities(logits)
            for (result, tensor, display), z, p in zip(chunk, logits, probabilities):
                self._decide(result, float(p), float(z))
                if heatmap_dir is not None and result.status == ACCEPTED:
                    result.heatmap = str(self._heatmap(result, tensor, display, heatmap_dir))
        return results

    def _gate(self, source: DeviceInput, allow_non_dicom: bool, show_phi: bool,
              keep_identity: bool = False) -> tuple[Prediction, np.ndarray | None]:
        """The result so far and the decoded image, or a refusal / unreadable with no image."""
        label = source_label(source)
        result = Prediction(label, ACCEPTED)
        dicom = not isinstance(source, (str, Path)) or is_dicom(source) \
            or Path(source).suffix.lower() in DICOM_SUFFIXES
        if not dicom:
            if not allow_non_dicom:
                result.status = REFUSED
                result.reason = "not a DICOM file; PNG/JPEG need --allow-non-dicom (no header checks)"
                return result, None
            result.note = NO_HEADER_NOTE
            try:
                return result, load_image(source)
            except CxrDeviceError as err:
                return _unreadable(result, without_label(err, label)), None
        try:
            ds = read_dataset(source, header_only=True)
        except DicomReadError as err:
            return _unreadable(result, without_label(err, label)), None
        except Exception as err:  # pydicom may fail in ways its docs do not list
            return _unreadable(result, f"unexpected error reading the header: {type(err).__name__}: {err}"), None
        result.dataset = ds
        if keep_identity:  # before the rules convert any value
            result.identity = SourceIdentity.capture(ds)
        check = check_dataset(ds, self.rules, label, show_phi)
        result.sop_instance_uid, result.phi = check.sop_instance_uid, check.phi
        result.study_instance_uid = str(ds.get("StudyInstanceUID", ""))
        result.series_instance_uid = str(ds.get("SeriesInstanceUID", ""))
        result.findings = [asdict(f) for f in check.findings]
        charset = charset_problem(ds)
        if charset:
            result.findings.insert(0, {"rule": CHARSET_RULE, "severity": "error", "attribute": "SpecificCharacterSet",
                                       "found": None, "expected": "a defined term", "message": charset})
        errors = [f for f in result.findings if f["severity"] == "error"]
        if check.status == FAIL or charset:
            result.status, result.reason = REFUSED, "; ".join(f"{f['rule']}: {f['message']}" for f in errors)
            return result, None
        try:
            return result, dataset_pixels(ds, label)  # pixels of the same parse
        except CxrDeviceError as err:
            return _unreadable(result, without_label(err, label)), None
        except Exception as err:
            return _unreadable(result, f"pixel data: {type(err).__name__}: {err}"), None

    def _decide(self, result: Prediction, probability: float, logit: float) -> None:
        if not (math.isfinite(probability) and math.isfinite(logit)):
            _unreadable(result, f"the model returned a non-finite probability ({probability}); nothing is decided")
            return
        result.probability, result.threshold, result.logit = probability, self.predictor.threshold, logit
        result.decision = self.predictor.decision(probability)

    def _heatmap(self, result: Prediction, tensor: torch.Tensor, display: np.ndarray, folder: Path) -> Path:
        """The overlay's pixels are the image, the map and fixed text: never a file name, a header
        value or anything that differs between two copies of one image (it may become a
        Secondary Capture in the patient's study)."""
        folder.mkdir(parents=True, exist_ok=True)
        return save_overlay(display, self.predictor.grad_cam(tensor), folder / heatmap_name(result), [])


def heatmap_name(result: Prediction) -> str:
    """``<stem>_<8 hex of the full path (or UID)>_gradcam.png``: inputs with the same file name
    in different folders never overwrite each other's maps, and a name is stable across runs."""
    in_memory = result.path.startswith(("dataset ", "<"))
    stem = "dataset" if in_memory else Path(result.path).stem
    key = result.sop_instance_uid if in_memory else str(Path(result.path).absolute())
    return f"{stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}_gradcam.png"


def _unreadable(result: Prediction, reason: str) -> Prediction:
    result.status, result.reason = UNREADABLE, reason
    result.probability = result.decision = result.threshold = result.logit = None
    return result


def predict_files(inputs: list[DeviceInput], bundle: Bundle, allow_non_dicom: bool = False,
                  heatmap_dir: Path | None = None, show_phi: bool = False, batch_size: int = 16) -> list[Prediction]:
    """One-off convenience: :class:`DevicePipeline` built for this call."""
    return DevicePipeline(bundle).run(inputs, allow_non_dicom, heatmap_dir, show_phi, batch_size)
