"""The SOUP list of the documents and the SBOM of a bundle, both from the measured runtime.

The runtime is no longer listed by hand: :mod:`fda_submission.security.sbom` imports what
``predict``, ``serve`` and ``assess`` can load in a fresh interpreter and records every
distribution that loaded (modules and shared libraries). This module keeps the names the rest of
the package uses: :func:`runtime_distributions` (the SOUP list of the appendices, the same
components as the SBOM), :func:`licence_constraint`, :func:`norm`, :func:`validation_errors`, and
:func:`sbom_for_bundle` behind ``cxr-device sbom``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .security.sbom import (  # noqa: F401 - the names other modules import from here
    PROPRIETARY,
    STRONG,
    UNDECLARED,
    WEAK,
    build_sbom,
    licence_constraint,
    measure_runtime,
    norm,
    sbom_record,
    validation_errors,
)


@dataclass(frozen=True)
class RuntimeDistribution:
    """One distribution of the runtime, as the SOUP list shows it."""

    name: str
    version: str
    licence: str
    purpose: str
    requires: tuple[str, ...]  # normalised names of the runtime distributions it requires

    @property
    def constraint(self) -> str | None:
        return licence_constraint(self.licence)

    @property
    def purl(self) -> str:
        return f"pkg:pypi/{norm(self.name)}@{self.version}"


def runtime_distributions(architecture: str | None = None) -> list[RuntimeDistribution]:
    """The measured runtime's distributions, sorted by name. ``architecture`` is accepted for the
    callers that pass it; the measurement covers every architecture's lazily imported packages."""
    return [RuntimeDistribution(c["name"], c["version"], c["licence"], c["purpose"], tuple(c["requires"]))
            for c in sbom_record()["components"]]


def sbom_for_bundle(bundle_dir: str | Path, profile_path: str | Path | None = None,
                    scan: dict | None = None) -> tuple[str, list[str]]:
    """The SBOM of a locked bundle's runtime (device named by the profile and device.json's
    sha256; dated like the documents; ``scan`` a vulnerability scan record, else the run's own
    ``security/vulnerability_scan.json`` when it has one) and the lines naming each flagged licence."""
    from cxr_device.errors import CxrDeviceError

    from .document_control import issue_date
    from .identity import device_identity
    from .profile import load_profile
    from .security.vulnerabilities import read_scan

    device_json = Path(bundle_dir) / "device.json"
    try:
        device = json.loads(device_json.read_text())
    except (OSError, ValueError) as err:
        raise CxrDeviceError(f"{device_json}: not a readable device.json ({err}); a bundle is made by "
                             "`cxr-device evaluate --run RUN`") from None
    profile = load_profile(profile_path)
    identity = device_identity(device_json, device, profile)
    record = sbom_record()
    run = Path(bundle_dir).parent
    date = issue_date(profile, run).text
    text = build_sbom(identity.as_dict(), record, date, profile["manufacturer"], scan or read_scan(run))
    return text, [f"{c['name']} {c['version']}: {c['licence']} ({c['constraint']})"
                  for c in record["components"] if c["constraint"]]
