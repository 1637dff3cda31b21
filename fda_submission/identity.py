"""The one identifier of the locked device: its name and version (device profile) and the sha256
of the bytes of ``bundle/device.json`` (:attr:`cxr_device.runtime.bundle.Bundle.device_sha256`).

device.json lists the sha256 of the weights and of the input rules, so its own hash names the
whole locked device; ``cxr-device assess`` records the same hash in every assessment, which is
how the documents tie an assessment to the device they describe. (device.json's
``content_sha256`` field is a different hash - of its canonical JSON without that field - used
only to detect edits at load; the documents never use it as the identifier.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_device.hashing import sha256_file


@dataclass(frozen=True)
class DeviceIdentity:
    """Name, version and device.json sha256 of the locked device."""

    name: str
    version: str
    device_sha256: str
    weights_sha256: str
    rules_sha256: str
    package_version: str

    @property
    def text(self) -> str:
        """``Name version (device.json sha256 <64 hex>)``: the device named in full, where no front
        matter states its hash (the provenance file, a record written outside the documents)."""
        return f"{self.name} {self.version} (device.json sha256 {self.device_sha256})"

    @property
    def label(self) -> str:
        """``Name version``: how a document's text names the device; the hash is in the document's
        front matter, once (issue 23: a 64-character hash two to four times on the first screen)."""
        return f"{self.name} {self.version}"

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "device_sha256": self.device_sha256,
                "weights_sha256": self.weights_sha256, "rules_sha256": self.rules_sha256,
                "package_version": self.package_version, "text": self.text, "label": self.label}


def device_identity(device_json: Path, device: dict, profile: dict) -> DeviceIdentity:
    """The identity of the device whose ``device.json`` (path and parsed content) is given."""
    files = device.get("files", {})
    return DeviceIdentity(profile["device_name"], profile["version"], sha256_file(device_json),
                          files.get("model.safetensors", ""), files.get("input_rules.yaml", ""),
                          str(device.get("package_version", "")))
