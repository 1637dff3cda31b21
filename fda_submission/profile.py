"""The device profile: the human-owned words of the documents, with defaults (YAML)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from cxr_device.errors import CxrDeviceError

DEFAULT_PROFILE = "device_profile.yaml"


def default_profile_path() -> Path:
    return Path(str(resources.files("fda_submission") / "profiles" / DEFAULT_PROFILE))


def load_profile(path: str | Path | None = None) -> dict:
    """The default profile, updated with the keys of ``path``; unknown keys are errors."""
    defaults = yaml.safe_load(default_profile_path().read_text())
    if path is None:
        return defaults
    try:
        given = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise CxrDeviceError(f"{path}: cannot read the device profile ({err})") from None
    if not isinstance(given, dict):
        raise CxrDeviceError(f"{path}: a device profile is a mapping of keys to text")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise CxrDeviceError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(defaults))}")
    acceptance = {**defaults["acceptance"], **(given.get("acceptance") or {})}
    return {**defaults, **given, "acceptance": acceptance}
