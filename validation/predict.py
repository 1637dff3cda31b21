"""``cxr-device predict``: DICOM in, a checked decision out - or a refusal that says why.

DICOM inputs pass the bundle's own header rules first; a file that fails them (or cannot be
read) is ``refused`` / ``unreadable`` and no probability is computed for it. PNG/JPEG inputs
are refused unless ``allow_non_dicom``, and then carry a note that no header checks were
possible. Every input appears once, in input order; no PHI unless ``show_phi``.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxr_device.bundle import Bundle
from cxr_device.errors import CxrDeviceError
from cxr_device.imageio import DICOM_SUFFIXES, is_dicom
from cxr_device.inference import Predictor, save_overlay
from cxr_device.provenance import producer

from .dicom_check import PASS, UNREADABLE, check_file
from .dicom_rules import load_rules

ACCEPTED, REFUSED = "accepted", "refused"
NO_HEADER_NOTE = "not a DICOM: no header checks were possible"


@dataclass
class Prediction:
    path: str
    status: str  # accepted | refused | unreadable
    sop_instance_uid: str = ""
    probability: float | None = None
    decision: str | None = None
    threshold: float | None = None
    findings: list[dict] = field(default_factory=list)
    reason: str = ""
    note: str = ""
    heatmap: str = ""
    phi: dict = field(default_factory=dict)


class DevicePipeline:
    """A verified bundle with its input rules parsed and its model ready: build once, reuse
    for every file (what a service keeps in memory)."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.rules = load_rules(bundle.rules_path)
        self.predictor = Predictor(bundle)

    def run(self, paths: list[Path], allow_non_dicom: bool = False, heatmap_dir: Path | None = None,
            show_phi: bool = False, batch_size: int = 16) -> list[Prediction]:
        """Check, score and explain every file; one :class:`Prediction` per input, in order."""
        return _run(self.rules, self.predictor, paths, allow_non_dicom, heatmap_dir, show_phi, batch_size)


def predict_files(paths: list[Path], bundle: Bundle, allow_non_dicom: bool = False, heatmap_dir: Path | None = None,
                  show_phi: bool = False, batch_size: int = 16) -> list[Prediction]:
    """One-off convenience: :class:`DevicePipeline` built for this call."""
    return DevicePipeline(bundle).run(paths, allow_non_dicom, heatmap_dir, show_phi, batch_size)


def _run(rules, predictor: Predictor, paths, allow_non_dicom, heatmap_dir, show_phi, batch_size) -> list[Prediction]:
    results: list[Prediction] = []
    ready: list[tuple[Prediction, torch.Tensor, np.ndarray]] = []
    for path in paths:
        result = Prediction(str(path), ACCEPTED)
        results.append(result)
        if is_dicom(path) or path.suffix.lower() in DICOM_SUFFIXES:
            check = check_file(path, rules, show_phi=show_phi)
            result.sop_instance_uid, result.phi = check.sop_instance_uid, check.phi
            result.findings = [asdict(f) for f in check.findings]
            if check.status != PASS:
                result.status = UNREADABLE if check.status == UNREADABLE else REFUSED
                result.reason = check.reason or "; ".join(f"{f.rule}: {f.message}" for f in check.errors)
                continue
        elif not allow_non_dicom:
            result.status, result.reason = REFUSED, "not a DICOM file; PNG/JPEG need --allow-non-dicom (no header checks)"
            continue
        else:
            result.note = NO_HEADER_NOTE
        try:
            tensor, display = predictor.prepare(path)
        except CxrDeviceError as err:
            result.status, result.reason = UNREADABLE, str(err)
            continue
        ready.append((result, tensor, display))
    for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        probabilities = predictor.probabilities(torch.stack([t for _, t, _ in chunk]))
        for (result, tensor, display), p in zip(chunk, probabilities):
            result.probability, result.threshold = float(p), predictor.threshold
            result.decision = predictor.decision(float(p))
            if heatmap_dir is not None:
                heatmap_dir.mkdir(parents=True, exist_ok=True)
                target = heatmap_dir / f"{Path(result.path).stem}_gradcam.png"
                lines = [Path(result.path).name,
                         f"device decision: {result.decision} (p = {p:.3f}, threshold {predictor.threshold:.3f})"]
                result.heatmap = str(save_overlay(display, predictor.grad_cam(tensor), target, lines))
    return results


def render(results: list[Prediction], fmt: str) -> str:
    """table | json | csv."""
    if fmt == "json":
        return json.dumps({"files": [{k: v for k, v in asdict(r).items() if v or k == "status"} for r in results],
                           "summary": summary(results), "produced_by": producer("predict")}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "sop_instance_uid", "status", "probability", "decision", "threshold", "reason", "note"])
        for r in results:
            writer.writerow([r.path, r.sop_instance_uid, r.status, "" if r.probability is None else f"{r.probability:.6f}",
                             r.decision or "", "" if r.threshold is None else f"{r.threshold:.6f}", r.reason, r.note])
        return buffer.getvalue()
    lines = []
    for r in results:
        if r.status == ACCEPTED:
            lines.append(f"{r.decision.upper():<13} p={r.probability:.3f} (threshold {r.threshold:.3f})  {r.path}")
            if r.note:
                lines.append(f"{'':<13} {r.note}")
            if r.heatmap:
                lines.append(f"{'':<13} heatmap: {r.heatmap}")
        else:
            lines.append(f"{r.status.upper():<13} {r.path}")
            errors = [f for f in r.findings if f["severity"] == "error"]
            for f in errors or [{"rule": r.status, "message": r.reason}]:
                lines.append(f"{'':<13} {f['rule']}: {f['message']}")
        if r.phi:
            lines.append(f"{'':<13} PHI: " + ", ".join(f"{k}={v}" for k, v in r.phi.items()))
    s = summary(results)
    lines += ["", f"{s['files']} file(s): {s[ACCEPTED]} accepted ({s['pneumonia']} pneumonia), "
                  f"{s[REFUSED]} refused, {s[UNREADABLE]} unreadable"]
    return "\n".join(lines) + "\n"


def summary(results: list[Prediction]) -> dict:
    count = lambda status: sum(r.status == status for r in results)  # noqa: E731
    return {"files": len(results), ACCEPTED: count(ACCEPTED), REFUSED: count(REFUSED), UNREADABLE: count(UNREADABLE),
            "pneumonia": sum(r.decision == "pneumonia" for r in results)}
