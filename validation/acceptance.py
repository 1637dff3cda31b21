"""Acceptance criteria of a validation study, and the intended-use prevalence, read from a device profile.

The criteria are lower bounds of 95% confidence intervals (AUROC, sensitivity, specificity); an
assessment passes a criterion when the lower bound of its interval reaches it. ``assess
--profile`` reads only the two keys it uses (``acceptance``, ``expected_prevalence``); the whole
profile is validated by ``cxr-device submission``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import SETTINGS, Fraction, build
from cxr_device.yaml_io import load_yaml


class Acceptance(BaseModel):
    """Acceptance criteria: lower bounds of the 95% confidence intervals of the validation study."""

    model_config = ConfigDict(**SETTINGS)
    auroc: Fraction
    sensitivity: Fraction
    specificity: Fraction


@dataclass(frozen=True)
class AssessmentTargets:
    """What an assessment is judged against: criteria, and the prevalence of the intended use."""

    acceptance: dict[str, float] | None = None
    prevalence: float | None = None


def read_targets(profile: str | Path | None) -> AssessmentTargets:
    """The acceptance criteria and expected prevalence of a device profile (none without one)."""
    if profile is None:
        return AssessmentTargets()
    document = load_yaml(profile, "device profile")
    if not isinstance(document, dict):
        raise CxrDeviceError(f"{profile}: a device profile is a mapping of keys to values")
    checked = build(_Targets, str(profile), {"acceptance": document.get("acceptance"),
                                             "expected_prevalence": document.get("expected_prevalence")})
    return AssessmentTargets(checked.acceptance.model_dump() if checked.acceptance else None,
                             checked.expected_prevalence)


class _Targets(BaseModel):
    model_config = ConfigDict(**SETTINGS)
    acceptance: Acceptance | None = None
    expected_prevalence: Fraction | None = None
