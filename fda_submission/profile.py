"""The device profile: the human-owned words of the documents, with defaults (YAML).

Every value is typed: text where the documents print text, lists of text where they print
lists, proportions strictly between 0 and 1 for the acceptance criteria, the power and the
expected prevalence. A value of the wrong type is refused with the file and the key, never
rendered (a string where a list belongs would print letter by letter).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from cxr_device.validated import SETTINGS, Fraction, build, check_keys
from cxr_device.yaml_io import load_yaml
from validation.acceptance import Acceptance

DEFAULT_PROFILE = "device_profile.yaml"
Text = Annotated[str, Field(min_length=1)]


class DeviceProfile(BaseModel):
    """Every key of a device profile (the default profile gives each its value)."""

    model_config = ConfigDict(**SETTINGS)
    device_name: Text
    version: Text
    manufacturer: Text
    contact: Text
    intended_use: Text
    indications_for_use: Text
    target_population: Text
    clinical_workflow: Text
    user: Text
    false_positive_impact: Text
    false_negative_impact: Text
    acceptance: Acceptance
    expected_prevalence: Fraction | None  # None: the prevalence of the run's test split
    power: Fraction
    ground_truth_readers: Annotated[int, Field(ge=1, le=100)]
    reader_study_labels: Text | None  # NIH radiologist re-reads for the ground-truth section
    exclusions_comorbidities: list[Text]
    include_comorbidities: list[Text]


def default_profile_path() -> Path:
    """The profile shipped with the package: the default of every key."""
    return Path(str(resources.files("fda_submission") / "profiles" / DEFAULT_PROFILE))


def load_profile(path: str | Path | None = None) -> dict[str, Any]:
    """The default profile, updated with the keys of ``path`` and validated; unknown keys are errors."""
    defaults = _read(default_profile_path())
    if path is None:
        return build(DeviceProfile, str(default_profile_path()), defaults).model_dump()
    given = _read(Path(path))
    acceptance = check_keys(f"{path}: acceptance", given.get("acceptance"), Acceptance.model_fields)
    merged = {**defaults, **given, "acceptance": {**defaults["acceptance"], **acceptance}}
    return build(DeviceProfile, str(path), merged).model_dump()


def _read(path: Path) -> dict[str, Any]:
    """The keys of one profile file (an empty file has none)."""
    return check_keys(str(path), load_yaml(path, "device profile"), DeviceProfile.model_fields)
