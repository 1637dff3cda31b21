"""The locked bundle: round trip, and refusal of every kind of damage."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from cxr_device.runtime.bundle import BundleError, load_bundle


@pytest.fixture
def bundle_dir(trained_run, tmp_path):
    return shutil.copytree(trained_run / "bundle", tmp_path / "bundle")


def test_round_trip_gives_the_trained_model(trained_run, bundle_dir):
    bundle = load_bundle(bundle_dir)
    state = torch.load(trained_run / "model" / "best.pt", weights_only=True)["model"]
    loaded = bundle.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    assert bundle.threshold == metrics["threshold"]["value"]
    assert bundle.preprocessing.image_size == 32
    assert {p.suffix for p in bundle_dir.iterdir()} == {".json", ".safetensors", ".yaml"}  # no pickle anywhere
    assert bundle.meta["training_cohort_sha256"] and bundle.meta["architecture"]["frozen"] == []


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, words", [
    (lambda d: _flip_byte(d / "model.safetensors", -10), "model.safetensors: sha256"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]), "altered or truncated"),
    (lambda d: (d / "input_rules.yaml").write_text("rules: []\n"), "input_rules.yaml: sha256"),
    (lambda d: (d / "input_rules.yaml").unlink(), "missing from the bundle"),
    (lambda d: (d / "device.json").write_text((d / "device.json").read_text().replace('"value": 0.', '"value": 0.0')),
     "edited after the bundle was locked"),
    (lambda d: (d / "device.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "device.json").unlink(), "cxr-device evaluate"),
])
@pytest.mark.requirement("REQ-BUNDLE-001")
def test_damaged_bundles_are_refused(bundle_dir, damage, words):
    damage(bundle_dir)
    with pytest.raises(BundleError, match=words):
        load_bundle(bundle_dir)
