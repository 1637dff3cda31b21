"""Scoring with a locked bundle: the same preprocessing as training, then the model, the
bundle's threshold, and optionally a Grad-CAM map.

Grad-CAM (Selvaraju et al., 2017) weights the activations of the model's last convolutional
block by the spatially averaged gradient of the pneumonia logit, keeps the positive part and
scales it to [0, 1]. It shows where the model looked; it is an aid to interpretation, not a
diagnosis and not a localisation claim.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from ..imageio import load_image
from ..preprocessing import center_crop, to_stored, to_views
from .bundle import Bundle

POSITIVE, NEGATIVE = "pneumonia", "no pneumonia"
HEATMAP_CAPTION = "Grad-CAM: an aid to interpretation, not a diagnosis"


class Predictor:
    """A bundle ready to score images (CPU by default): every member of the bundle on every
    test-time view, logits averaged, then the bundle's calibration."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu"):
        self.bundle = bundle
        self.device = torch.device(device)
        self.models = [m.to(self.device).eval() for m in bundle.models]
        self.model = self.models[0]
        self.views = bundle.views
        self.pre = bundle.preprocessing
        self.threshold = bundle.threshold
        self.calibration = bundle.calibration

    def prepare_image(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(the model inputs (V, 1, S, S) - one per test-time view, the centre first -, the centre
        crop as uint8 for display) from a decoded float32 [0, 1] image (H, W), through the one
        preprocessing of training."""
        stored = to_stored(image, self.pre)
        return to_views(stored, self.pre, self.views), center_crop(stored, self.pre.image_size)

    def prepare(self, path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
        """:meth:`prepare_image` of a file read with the one image loader."""
        return self.prepare_image(load_image(path))

    @torch.inference_mode()
    def logits(self, inputs: torch.Tensor) -> np.ndarray:
        """The device's logit (float64) of each image of a batch (N, V, 1, S, S): the mean over
        members and views of the models' logits."""
        batch = inputs.to(self.device)
        flat = batch.reshape(-1, *batch.shape[-3:])
        total = sum(m(flat).float().reshape(batch.shape[0], batch.shape[1]).mean(dim=1) for m in self.models)
        return (total / len(self.models)).cpu().numpy().astype(np.float64)

    def probabilities(self, inputs: torch.Tensor) -> np.ndarray:
        """Calibrated pneumonia probabilities (float64) of a batch (N, V, 1, S, S): the bundle's
        calibration applied to the device's logits, as ``evaluate`` computed them."""
        return self.calibration.probabilities(self.logits(inputs))

    def decision(self, probability: float) -> str:
        return POSITIVE if probability >= self.threshold else NEGATIVE

    def grad_cam(self, views: torch.Tensor) -> np.ndarray:
        """Grad-CAM map (S, S) in [0, 1] of the first member on the centre view of one input (V, 1, S, S)."""
        return grad_cam(self.model, views[:1].to(self.device))


def grad_cam(model, x: torch.Tensor) -> np.ndarray:
    """Grad-CAM of the pneumonia logit at ``model.feature_block`` for a batch of one."""
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["a"] = output

    handle = model.blocks[model.feature_block].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)  # gradients flow even through frozen blocks
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
    finally:
        handle.remove()
    activation = captured["a"]
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    top = cam.max()
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    return cam.detach().cpu().numpy().astype(np.float32)


def save_overlay(display: np.ndarray, cam: np.ndarray, path: str | Path, lines: list[str]) -> Path:
    """The model's input crop in gray beside the same crop with the map in colour, then the
    given text lines and the caption."""
    gray = np.repeat(np.asarray(display, dtype=np.float32)[..., None] / 255.0, 3, axis=2)
    heat = colormaps["jet"](cam)[..., :3]
    blend = np.clip(0.55 * gray + 0.45 * heat, 0, 1)
    size = max(320, gray.shape[0])
    panels = [Image.fromarray((a * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
              for a in (gray, blend)]
    text = [*lines, HEATMAP_CAPTION]
    canvas = Image.new("RGB", (2 * size, size + 16 * len(text) + 8), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel, (i * size, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(text):
        draw.text((6, size + 4 + 16 * i), line, fill="black")
    canvas.save(path)
    return Path(path)
