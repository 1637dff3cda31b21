"""The synthetic generator: NIH layout, determinism, synthetic marking, learnable signal."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cxr_device.nih_metadata import read_nih_metadata
from cxr_device.provenance import SYNTHETIC_MARKER
from cxr_device.synth import METADATA_NAME, NIH_HEADER, SynthSettings, generate, phantom


def test_layout_marker_and_readable_by_the_nih_reader(synth_dataset):
    csv_path, root = synth_dataset
    assert csv_path.name == METADATA_NAME
    assert csv_path.read_text().splitlines()[0] == NIH_HEADER
    marker = json.loads((root / SYNTHETIC_MARKER).read_text())
    assert marker["synthetic"] is True and "Not patient data" in marker["note"]
    table = read_nih_metadata(csv_path)
    f = table.frame
    assert table.exclusions.counts() == {}
    assert f["patient_id"].nunique() == 40 and len(f) > 40  # several images per patient
    assert 0.05 < f["pneumonia"].mean() < 0.45
    assert set(f["view"]) == {"PA", "AP"} and set(f["sex"]) == {"M", "F"}
    first = sorted(root.glob("images_001/images/*.png"))[0]
    assert "SYNTHETIC" in Image.open(first).text["Description"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(tmp_path / "a", SynthSettings(n_patients=5, seed=7, image_size=32), progress=False)
    b = generate(tmp_path / "b", SynthSettings(n_patients=5, seed=7, image_size=32), progress=False)
    c = generate(tmp_path / "c", SynthSettings(n_patients=5, seed=8, image_size=32), progress=False)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    pngs_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    for rel in pngs_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_positives_carry_extra_lung_opacity():
    """Averaged over many phantoms, positives are brighter inside the lungs: learnable signal."""
    size = 64
    lungs = np.zeros((size, size), bool)
    lungs[16:48, 6:24] = lungs[16:48, 40:58] = True
    pos = [phantom(size, True, False, np.random.default_rng(i))[lungs].mean() for i in range(60)]
    neg = [phantom(size, False, False, np.random.default_rng(i))[lungs].mean() for i in range(60)]
    assert np.mean(pos) > np.mean(neg) + 2.0  # grey levels on a 0-255 scale
