"""Synthetic NIH-format datasets: chest-like phantoms with a metadata CSV in the exact NIH layout.

Used by the demo and the tests. Nothing here is patient data, and every output says so: a
``synthetic.json`` marker beside the CSV (which the cohort step detects and records), the CSV's
file name, and a text chunk inside every PNG.

Phantoms have a body outline, two air-filled lungs, mediastinum and heart (magnified on AP
views, as in real radiographs), spine, ribs and noise. Pneumonia-positive images carry a faint
regional opacity in one lung, so a model can learn something. Age, sex, view and finding
frequencies follow the NIH ChestX-ray14 marginals; patients have several images.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin
from pydantic import Field
from pydantic.dataclasses import dataclass
from tqdm import tqdm

from . import __version__
from .findings import NIH_FINDINGS
from .provenance import SYNTHETIC_MARKER
from .resources import require_disk, require_memory
from .validated import RANGE, SETTINGS, Seed

METADATA_NAME = "Data_Entry_SYNTHETIC.csv"
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
FILES_PER_FOLDER = 200  # small, so that even a demo exercises images_001/, images_002/, ...

# Per-image frequency of each finding in NIH ChestX-ray14 (Pneumonia handled separately).
_NIH_FREQUENCY = {
    "Infiltration": 0.177, "Effusion": 0.119, "Atelectasis": 0.103, "Nodule": 0.056, "Mass": 0.052,
    "Pneumothorax": 0.047, "Consolidation": 0.042, "Pleural_Thickening": 0.030, "Cardiomegaly": 0.025,
    "Emphysema": 0.022, "Edema": 0.021, "Fibrosis": 0.015, "Hernia": 0.002,
}
# How much more often a finding co-occurs with pneumonia (as in NIH: infiltration, consolidation...).
_WITH_PNEUMONIA = {"Infiltration": 2.5, "Consolidation": 2.0, "Edema": 2.0, "Effusion": 1.5}
_POSITIVE_IMAGE_RATE = 0.7  # share of a pneumonia-prone patient's images that show pneumonia
IMAGES_PER_PATIENT = 2.9  # mean of min(10, geometric(0.35)) is 2.83: for estimates of size
ROW_BYTES = 2000  # memory of one metadata row while the table is built (a dict, then a DataFrame row)
ADVICE = "lower data.synthetic.n_patients or image_size (--n-patients, --image-size)"


@dataclass(frozen=True, config=SETTINGS)
class SynthSettings:
    """What to generate; the same settings always give byte-identical files."""

    n_patients: Annotated[int, Field(ge=1, le=100_000), RANGE] = 100
    seed: Seed = 0
    image_size: Annotated[int, Field(ge=32, le=2048), RANGE] = 256
    prevalence: Annotated[float, Field(gt=0, lt=0.7), RANGE] = 0.2  # approximate share of pneumonia-positive images


def synth_metadata(settings: SynthSettings) -> pd.DataFrame:
    """The metadata table (NIH column names) for ``settings``; no images are written."""
    require_memory(settings.n_patients * IMAGES_PER_PATIENT * ROW_BYTES, f"the metadata of {_what(settings)}", ADVICE)
    rng = np.random.default_rng(settings.seed)
    prone_rate = settings.prevalence / _POSITIVE_IMAGE_RATE
    others = [f for f in NIH_FINDINGS if f not in ("Pneumonia", "No Finding")]
    rows = []
    spacing = round(0.143 * 1024 / settings.image_size, 6)
    for patient in range(1, settings.n_patients + 1):
        n_images = int(min(10, rng.geometric(0.35)))
        age0 = float(np.clip(rng.normal(47, 17), 1, 92))
        sex = "M" if rng.random() < 0.565 else "F"
        prone = rng.random() < prone_rate
        positives = rng.random(n_images) < _POSITIVE_IMAGE_RATE if prone else np.zeros(n_images, bool)
        if prone and not positives.any():
            positives[rng.integers(n_images)] = True
        for k in range(n_images):
            found = ["Pneumonia"] if positives[k] else []
            for name in others:
                p = _NIH_FREQUENCY[name] * (_WITH_PNEUMONIA.get(name, 1.0) if positives[k] else 1.0)
                if rng.random() < p:
                    found.append(name)
            found = [f for f in NIH_FINDINGS if f in found] or ["No Finding"]
            view = "AP" if rng.random() < (0.3 if k == 0 else 0.5) else "PA"
            rows.append({
                "Image Index": f"{patient:08d}_{k:03d}.png",
                "Finding Labels": "|".join(found),
                "Follow-up #": k,
                "Patient ID": patient,
                "Patient Age": int(min(95, age0 + k * rng.uniform(0, 0.5))),
                "Patient Gender": sex,
                "View Position": view,
                "Width": settings.image_size,
                "Height": settings.image_size,
                "Spacing_x": spacing,
                "Spacing_y": spacing,
            })
    return pd.DataFrame(rows)


def _what(settings: SynthSettings) -> str:
    return (f"synthetic data ({settings.n_patients:,} patients, about {settings.n_patients * IMAGES_PER_PATIENT:,.0f} "
            f"images of {settings.image_size} x {settings.image_size} px)")


def phantom(size: int, positive: bool, ap_view: bool, rng: np.random.Generator) -> np.ndarray:
    """One chest-like phantom as uint8 (size x size); bone and soft tissue bright, air dark."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)
    dx, dy = rng.uniform(-0.04, 0.04, 2)
    scale = rng.uniform(0.93, 1.07)
    x, y = (x - dx) / scale, (y - dy) / scale

    def ellipse(cx, cy, rx, ry, soft=0.04):
        r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
        return np.clip((1 - r) / soft, 0, 1)

    image = 0.04 + 0.42 * ellipse(0, 0.05, 0.9, 1.05, soft=0.15)
    lungs = ellipse(-0.4, -0.05, 0.3, 0.6, 0.12) + ellipse(0.4, -0.05, 0.3, 0.6, 0.12)
    image -= 0.28 * np.clip(lungs, 0, 1)
    heart = 1.15 if ap_view else 1.0
    image += 0.22 * ellipse(0.0, -0.3, 0.13, 0.5, 0.3)  # mediastinum
    image += 0.3 * ellipse(0.12, 0.3, 0.3 * heart, 0.27 * heart, 0.25)  # heart, towards the patient's left
    image += 0.22 * np.clip(1 - np.abs(x) / 0.07, 0, 1) * (y > -0.9)  # spine
    for k in range(9):  # ribs: curved bands across both lungs
        curve = -0.7 + 0.17 * k + 0.35 * x ** 2
        image += 0.07 * np.clip(1 - np.abs(y - curve) / 0.025, 0, 1) * (np.abs(x) > 0.08) * (np.abs(x) < 0.75)
    if positive:  # faint regional opacity in the lower/middle zone of one lung
        side = rng.choice([-1.0, 1.0])
        cx, cy = side * rng.uniform(0.3, 0.5), rng.uniform(0.0, 0.4)
        sigma = rng.uniform(0.1, 0.18)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
        image += rng.uniform(0.12, 0.2) * blob * np.clip(lungs, 0, 1)
    image *= rng.uniform(0.9, 1.1)
    image += rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def generate(out_dir: str | Path, settings: SynthSettings, progress: bool = True) -> Path:
    """Write ``METADATA_NAME``, ``synthetic.json`` and ``images_NNN/images/*.png`` under ``out_dir``.

    Returns the path of the metadata CSV.
    """
    out = Path(out_dir)
    require_disk(settings.n_patients * IMAGES_PER_PATIENT * settings.image_size ** 2, out, _what(settings), ADVICE)
    meta = synth_metadata(settings)
    out.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", f"SYNTHETIC phantom from cxr-device synth (seed {settings.seed}); not patient data")
    for i, row in enumerate(tqdm(meta.itertuples(index=False), total=len(meta), desc="synth images",
                                 unit="img", disable=not progress)):
        folder = out / f"images_{i // FILES_PER_FOLDER + 1:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        patient, k = row[3], row[2]
        rng = np.random.default_rng([settings.seed, patient, k])
        pixels = phantom(settings.image_size, "Pneumonia" in row[1], row[6] == "AP", rng)
        Image.fromarray(pixels).save(folder / row[0], pnginfo=info)
    csv_path = out / METADATA_NAME
    body = meta.to_csv(index=False, header=False, lineterminator="\n")
    csv_path.write_text(NIH_HEADER + "\n" + body)
    marker = {
        "synthetic": True,
        "generator": "cxr-device synth",
        "version": __version__,
        "settings": settings.__dict__,
        "n_images": int(len(meta)),
        "n_positive": int(meta["Finding Labels"].str.contains("Pneumonia").sum()),
        "note": "Synthetic phantoms for demos and tests. Not patient data; no clinical claim may rest on it.",
    }
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return csv_path
