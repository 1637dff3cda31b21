"""Deliberate forgery of a locked bundle, and what stops it.

Hashes stop damage, not a forger: whoever can write the bundle folder can edit device.json and
recompute every hash. Only a signature checked against a key the *site* pins refuses that, so
each forgery below is tried twice where it matters - refused with a pinned key, and (stated
plainly in the test name) loaded, with the "not verified" note, without one.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cxr_device.cli import main
from cxr_device.hashing import sha256_file
from cxr_device.models import ModelSpec, build_model
from cxr_device.runtime.bundle import FORMAT, BundleError, canonical_hash, load_bundle
from cxr_device.runtime.signing import (
    TRUSTED_KEY_ENV,
    SignatureError,
    generate_key_pair,
    sign_bundle,
)


@pytest.fixture(autouse=True)
def _no_pinned_key_from_the_environment(monkeypatch):
    monkeypatch.delenv(TRUSTED_KEY_ENV, raising=False)


@pytest.fixture
def bundle_dir(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run / "bundle", tmp_path / "bundle"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """The manufacturer's key pair and somebody else's."""
    own_private, own_public = generate_key_pair(tmp_path_factory.mktemp("own_key"))
    other_private, other_public = generate_key_pair(tmp_path_factory.mktemp("other_key"))
    return {"private": own_private, "public": own_public, "other_private": other_private,
            "other_public": other_public}


def _rewrite(folder: Path, change) -> None:
    """Edit device.json as a forger would: change it, then recompute content_sha256."""
    document = json.loads((folder / "device.json").read_text())
    change(document)
    document["content_sha256"] = canonical_hash(document)
    (folder / "device.json").write_text(json.dumps(document, indent=2) + "\n")


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(document: dict) -> None:
        target = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _forge_threshold(folder: Path, value: float = 0.0) -> None:
    _rewrite(folder, _set("threshold", "value", value))


def _rehash(folder: Path, name: str) -> None:
    """Put the current sha256 of ``name`` into device.json (and recompute its content hash)."""
    _rewrite(folder, _set("files", name, sha256_file(folder / name)))


def _swap_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Replace the weights by another model of the same architecture; hashes recomputed."""
    spec = json.loads((folder / "device.json").read_text())["architecture"]["spec"]
    torch.manual_seed(1234)
    state = {k: v.contiguous() for k, v in build_model(ModelSpec(**{**spec, "weights": "none"})).state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": FORMAT})
    _rehash(folder, "model.safetensors")
    return state


# --- (a) an edited threshold with a recomputed content hash -------------------------------------
@pytest.mark.requirement("REQ-BUNDLE-001")
def test_forged_threshold_with_recomputed_hash_is_refused_when_a_key_is_pinned(bundle_dir, keys):
    sign_bundle(bundle_dir, keys["private"])
    assert load_bundle(bundle_dir, keys["public"]).signature.verified
    _forge_threshold(bundle_dir, 0.0)
    with pytest.raises(SignatureError, match="not valid for the pinned key.*altered after signing"):
        load_bundle(bundle_dir, keys["public"])


def test_forged_threshold_with_recomputed_hash_is_also_refused_when_the_key_is_pinned_by_environment(
        bundle_dir, keys, monkeypatch):
    sign_bundle(bundle_dir, keys["private"])
    _forge_threshold(bundle_dir, 0.0)
    monkeypatch.setenv(TRUSTED_KEY_ENV, str(keys["public"]))
    with pytest.raises(SignatureError, match="not valid for the pinned key"):
        load_bundle(bundle_dir)


def test_forged_threshold_with_recomputed_hash_LOADS_when_no_key_is_pinned_and_says_not_verified(bundle_dir, keys):
    """The honest limit of hashes: without a pinned key a careful forgery is not detected; the
    load says so. A signature.json alone proves nothing (it is not checked without a key)."""
    sign_bundle(bundle_dir, keys["private"])
    _forge_threshold(bundle_dir, 0.0)
    bundle = load_bundle(bundle_dir)
    assert bundle.threshold == 0.0
    assert not bundle.signature.verified and bundle.signature.signed
    assert "not verified by signature" in bundle.signature.describe()
    assert "no key is pinned" in bundle.signature.describe()


# --- (b) swapped weights with recomputed hashes -------------------------------------------------
def test_swapped_weights_with_recomputed_hashes_are_refused_when_a_key_is_pinned(bundle_dir, keys):
    sign_bundle(bundle_dir, keys["private"])
    _swap_weights(bundle_dir)
    with pytest.raises(SignatureError, match="not valid for the pinned key"):
        load_bundle(bundle_dir, keys["public"])


def test_swapped_weights_with_recomputed_hashes_LOAD_when_no_key_is_pinned(bundle_dir):
    forged = _swap_weights(bundle_dir)
    bundle = load_bundle(bundle_dir)
    loaded = bundle.model.state_dict()
    assert all(torch.equal(loaded[k], forged[k]) for k in forged)
    assert not bundle.signature.verified and "not verified" in bundle.signature.describe()


# --- (c) unsigned, wrongly signed, tampered signature --------------------------------------------
@pytest.mark.requirement("REQ-BUNDLE-002")
def test_unsigned_bundle_is_refused_when_a_key_is_pinned(bundle_dir, keys):
    with pytest.raises(SignatureError, match="not signed.*refusing an unsigned device"):
        load_bundle(bundle_dir, keys["public"])


@pytest.mark.requirement("REQ-BUNDLE-002")
def test_bundle_signed_by_another_key_is_refused(bundle_dir, keys):
    sign_bundle(bundle_dir, keys["other_private"])
    with pytest.raises(SignatureError, match="signed by someone else"):
        load_bundle(bundle_dir, keys["public"])


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_text("{not json"), "signature.json: not valid JSON"),
    (lambda p: p.write_text(json.dumps({"algorithm": "RSA"})), "expected an Ed25519 signature record"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "signature": "%%%"})), "not base64"),
])
def test_tampered_signature_record_is_refused_when_a_key_is_pinned(bundle_dir, keys, damage, words):
    damage(sign_bundle(bundle_dir, keys["private"]))
    with pytest.raises(SignatureError, match=words):
        load_bundle(bundle_dir, keys["public"])


def test_a_private_key_or_a_missing_file_cannot_be_pinned(bundle_dir, keys, tmp_path):
    sign_bundle(bundle_dir, keys["private"])
    with pytest.raises(SignatureError, match="not a PEM public key"):
        load_bundle(bundle_dir, keys["private"])
    with pytest.raises(SignatureError, match="key file not found"):
        load_bundle(bundle_dir, tmp_path / "nope.pem")


def _chest_dicom(make_dicom) -> Path:
    pixels = (np.random.default_rng(0).random((512, 512)) * 4095).astype(np.uint16)
    return make_dicom("chest.dcm", pixels, bits_stored=12)


@pytest.mark.requirement("REQ-BUNDLE-001")
def test_keygen_sign_verify_predict_round_trip_and_exit_codes(bundle_dir, tmp_path, make_dicom, capsys,
                                                              monkeypatch, keys):
    key_dir = tmp_path / "keys"
    assert main(["keygen", "--out", str(key_dir)]) == 0
    private, public = key_dir / "signing_key.pem", key_dir / "signing_key.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert main(["keygen", "--out", str(key_dir)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err

    assert main(["verify", "--bundle", str(bundle_dir), "--trusted-key", str(public)]) == 2  # not signed yet
    assert "refusing an unsigned device" in capsys.readouterr().err
    assert main(["sign", "--bundle", str(bundle_dir), "--key", str(private)]) == 0
    assert main(["verify", "--bundle", str(bundle_dir), "--trusted-key", str(public)]) == 0
    assert "signature verified" in capsys.readouterr().out
    assert main(["verify", "--bundle", str(bundle_dir), "--trusted-key", str(keys["public"])]) == 2  # other key

    dicom = str(_chest_dicom(make_dicom))
    assert main(["predict", "--bundle", str(bundle_dir), "--trusted-key", str(public), dicom]) == 0
    assert "signature verified" in capsys.readouterr().err

    _forge_threshold(bundle_dir, 0.0)
    capsys.readouterr()
    assert main(["verify", "--bundle", str(bundle_dir), "--trusted-key", str(public)]) == 2
    assert main(["predict", "--bundle", str(bundle_dir), "--trusted-key", str(public), dicom]) == 2
    monkeypatch.setenv(TRUSTED_KEY_ENV, str(public))
    assert main(["predict", "--bundle", str(bundle_dir), dicom]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.count("not valid for the pinned key") == 3


def test_sign_works_while_a_site_key_is_pinned_in_the_environment(bundle_dir, keys, monkeypatch, capsys):
    """Signing checks the bundle's hashes; a key pinned for *using* bundles must not stop the
    manufacturer from signing an (as yet unsigned) bundle."""
    monkeypatch.setenv(TRUSTED_KEY_ENV, str(keys["public"]))
    assert main(["sign", "--bundle", str(bundle_dir), "--key", str(keys["private"])]) == 0, capsys.readouterr().err
    assert load_bundle(bundle_dir).signature.verified


def test_sign_refuses_a_damaged_bundle(bundle_dir, keys, capsys):
    (bundle_dir / "input_rules.yaml").write_text("rules: []\n")
    assert main(["sign", "--bundle", str(bundle_dir), "--key", str(keys["private"])]) == 2
    assert "input_rules.yaml: sha256" in capsys.readouterr().err
    assert not (bundle_dir / "signature.json").exists()


# --- (d) files outside the bundle -----------------------------------------------------------------
@pytest.mark.parametrize("change", [
    lambda d: d["files"].__setitem__("../../etc/passwd", sha256_file("/etc/passwd")),
    lambda d: d["files"].__setitem__("/etc/passwd", sha256_file("/etc/passwd")),
    lambda d: d.__setitem__("files", {"../../etc/passwd" if k == "input_rules.yaml" else k: v
                                      for k, v in d["files"].items()}),
    lambda d: d.__setitem__("files", {"sub/../model.safetensors" if k == "model.safetensors" else k: v
                                      for k, v in d["files"].items()}),
], ids=["extra-parent-path", "extra-absolute-path", "renamed-to-parent-path", "dotted-name"])
def test_file_entries_outside_the_bundle_are_refused_even_with_recomputed_hashes(bundle_dir, change):
    _rewrite(bundle_dir, change)
    with pytest.raises(BundleError, match=r"device.json: .*files must list exactly model.safetensors, "
                                          r"input_rules.yaml \(plain names inside the bundle\)"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("name", ["model.safetensors", "input_rules.yaml"])
def test_a_symlink_to_an_identical_outside_file_is_refused(bundle_dir, tmp_path, name):
    outside = tmp_path / f"outside_{name}"
    shutil.move(bundle_dir / name, outside)
    os.symlink(outside, bundle_dir / name)  # same bytes: every hash still matches
    with pytest.raises(BundleError, match=f"{name}: is a symbolic link"):
        load_bundle(bundle_dir)


def test_a_symlink_to_another_outside_file_with_recomputed_hashes_is_refused(bundle_dir, tmp_path):
    outside = tmp_path / "site_rules.yaml"
    outside.write_text((bundle_dir / "input_rules.yaml").read_text().replace("CHEST", "ABDOMEN"))
    (bundle_dir / "input_rules.yaml").unlink()
    os.symlink(outside, bundle_dir / "input_rules.yaml")
    _rehash(bundle_dir, "input_rules.yaml")
    with pytest.raises(BundleError, match="input_rules.yaml: is a symbolic link"):
        load_bundle(bundle_dir)


def test_a_symlinked_device_json_is_refused(bundle_dir, tmp_path):
    outside = tmp_path / "device.json"
    shutil.move(bundle_dir / "device.json", outside)
    os.symlink(outside, bundle_dir / "device.json")
    with pytest.raises(BundleError, match="device.json: is a symbolic link"):
        load_bundle(bundle_dir)


# --- (e) fields that do not fit, weights that are not safetensors ---------------------------------
def _pickle_as_weights(folder: Path) -> None:
    torch.save({"model": {"w": torch.zeros(3)}}, folder / "model.safetensors")
    _rehash(folder, "model.safetensors")


@pytest.mark.parametrize("forge, words", [
    (lambda d: _rewrite(d, _set("threshold", "value", float("nan"))),
     r"device.json: threshold.value: Input should be a finite number \(got nan\)"),
    (lambda d: _rewrite(d, _set("threshold", "value", "abc")),
     r"device.json: threshold.value: Input should be a valid number \(got 'abc'\)"),
    (lambda d: _rewrite(d, _set("threshold", "value", 1.5)), r"device.json: threshold.value: .*less than or equal to 1"),
    (lambda d: _rewrite(d, lambda doc: doc.pop("files")), r"device.json: files: Field required"),
    (lambda d: _rewrite(d, _set("architecture", "spec", "evil", "os.system")),
     r"device.json: architecture.spec.evil: unknown key"),
    (lambda d: _rewrite(d, _set("architecture", "spec", "arch", "not_a_net")),
     r"device.json: architecture: unknown architecture 'not_a_net'"),
    (lambda d: _rewrite(d, _set("preprocessing", "std", 0.0)), r"device.json: preprocessing.std: .*greater than 0"),
    (_pickle_as_weights, r"model.safetensors: not safetensors weights that fit small_cnn"),
], ids=["nan-threshold", "text-threshold", "threshold-above-1", "no-files", "unknown-spec-key", "unknown-arch",
        "zero-std", "pickle-as-safetensors"])
def test_fields_that_do_not_fit_are_precise_bundle_errors(bundle_dir, forge, words, make_dicom, capsys):
    forge(bundle_dir)
    with pytest.raises(BundleError, match=words):
        load_bundle(bundle_dir)
    assert main(["predict", "--bundle", str(bundle_dir), str(_chest_dicom(make_dicom))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
