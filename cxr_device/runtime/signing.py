"""Ed25519 signatures of a bundle's device.json (``cryptography``), and their verification.

device.json lists the sha256 of every other bundle file, so signing its exact bytes signs the
whole device. ``signature.json`` beside it records the algorithm, the signature (base64) and the
sha256 fingerprint of the signer's public key. Only a public key the site *pins* (a file it
keeps outside the bundle) can make a bundle trusted: the key named inside a bundle proves
nothing, since a forger would put their own there.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import CxrDeviceError
from ..run_layout import DEVICE_JSON, SIGNATURE

ALGORITHM = "Ed25519"
SIGNED_FILE = DEVICE_JSON
#: Environment variable naming the pinned public key when ``--trusted-key`` is not given.
TRUSTED_KEY_ENV = "CXR_DEVICE_TRUSTED_KEY"
UNSIGNED_NOTE = ("bundle not verified by signature: its hashes detect corruption and accidental edits, not a "
                 "deliberate forgery; pin the manufacturer's public key with --trusted-key (or "
                 f"{TRUSTED_KEY_ENV}) to refuse forged bundles")


class SignatureError(CxrDeviceError):
    """A signature is missing, malformed, by another key, or does not match."""


@dataclass(frozen=True)
class SignatureStatus:
    """What was established about a bundle's signature when it was loaded."""

    signed: bool  # signature.json is present
    verified: bool  # ... and valid for the pinned key
    key_fingerprint: str | None  # sha256 of the signer's raw public key, as recorded or pinned

    def describe(self) -> str:
        if self.verified:
            return f"signature verified (Ed25519, pinned key {self.key_fingerprint[:16]}...)"
        return UNSIGNED_NOTE if not self.signed else (
            f"signed by key {str(self.key_fingerprint)[:16]}... but no key is pinned, so the signature was not "
            f"checked; {UNSIGNED_NOTE}")


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 hex of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def generate_key_pair(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``signing_key.pem`` (private, mode 0600; keep it off the device) and
    ``signing_key.pub.pem`` (public: the file a site pins). Refuses to overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / "signing_key.pem", out / "signing_key.pub.pem"
    for path in (private_path, public_path):
        if path.exists():
            raise SignatureError(f"{path}: already exists; a key is never overwritten - choose another folder")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: a {type(key).__name__}; bundles are signed with Ed25519 keys "
                             "(`cxr-device keygen`)")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (the key a site pins)."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise SignatureError(f"{path}: not a PEM public key ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path}: a {type(key).__name__}; a pinned bundle key is an Ed25519 public key")
    return key


def _read_key_file(path: str | Path) -> bytes:
    path = Path(path)
    try:
        if path.stat().st_size > 64 * 1024:
            raise SignatureError(f"{path}: too large to be a key file")
        return path.read_bytes()
    except FileNotFoundError:
        raise SignatureError(f"{path}: key file not found") from None
    except OSError as err:
        raise SignatureError(f"{path}: cannot read the key file ({err.strerror or err})") from None


def sign_bundle(folder: str | Path, private_key_path: str | Path) -> Path:
    """Sign ``folder/device.json`` and write ``folder/signature.json``; returns its path."""
    folder = Path(folder)
    device = folder / SIGNED_FILE
    if device.is_symlink() or not device.is_file():
        raise SignatureError(f"{device}: not found (or a link); sign a bundle made by `cxr-device evaluate`")
    key = load_private_key(private_key_path)
    record = {"algorithm": ALGORITHM, "signed_file": SIGNED_FILE,
              "signed_sha256": hashlib.sha256(device.read_bytes()).hexdigest(),
              "public_key_sha256": fingerprint(key.public_key()),
              "signature": base64.b64encode(key.sign(device.read_bytes())).decode()}
    path = folder / SIGNATURE
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def verify_bundle_signature(folder: Path, device_bytes: bytes, trusted_key: str | Path | None = None,
                            environment_key: bool = True) -> SignatureStatus:
    """Check ``signature.json`` against the pinned key (``trusted_key``, else - when
    ``environment_key`` - the :data:`TRUSTED_KEY_ENV` variable). Without a pinned key nothing is
    verified and the status says so; with one, a missing or invalid signature raises
    :class:`SignatureError`."""
    if not trusted_key and environment_key:
        trusted_key = os.environ.get(TRUSTED_KEY_ENV)
    trusted_key = trusted_key or None
    path = folder / SIGNATURE
    record = _read_record(path) if path.exists() or path.is_symlink() else None
    if trusted_key is None:
        return SignatureStatus(record is not None, False, record.get("public_key_sha256") if record else None)
    pinned = load_public_key(trusted_key)
    pinned_fp = fingerprint(pinned)
    if record is None:
        raise SignatureError(f"{folder}: the bundle is not signed, and key {pinned_fp[:16]}... is pinned "
                             f"({trusted_key}); refusing an unsigned device")
    try:
        signature = base64.b64decode(str(record.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{path}: 'signature' is not base64") from None
    try:
        pinned.verify(signature, device_bytes)
    except InvalidSignature:
        raise SignatureError(f"{path}: the signature of {SIGNED_FILE} is not valid for the pinned key "
                             f"{pinned_fp[:16]}... ({trusted_key}): the bundle was altered after signing or "
                             "signed by someone else") from None
    return SignatureStatus(True, True, pinned_fp)


def _read_record(path: Path) -> dict:
    if path.is_symlink() or not path.is_file():
        raise SignatureError(f"{path}: not a regular file; a bundle holds its own files only")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SignatureError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM:
        raise SignatureError(f"{path}: expected an {ALGORITHM} signature record")
    return record
