"""The limits ``cxr-device monitor`` judges a node's records against, read from the device profile.

The post-market keys (``postmarket``: review volume, PSI limit, KS p-value, the fewest scores drift is
judged on) are typed here and used by the profile of the documents too
(:mod:`fda_submission.profile`), so the plan and the command read the same values. Monitor reads
only what it uses: ``postmarket``, ``study.refusal_limit`` and ``expected_prevalence``; the whole
profile is validated by ``cxr-device submission``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import SETTINGS, Fraction, build
from cxr_device.yaml_io import load_yaml


class Postmarket(BaseModel):
    """Postmarket monitoring plan values owned by the manufacturer."""

    model_config = ConfigDict(**SETTINGS)
    owner: Annotated[str, Field(min_length=1)] | None = None
    review_interval_months: Annotated[int, Field(ge=1, le=60)] = 3
    flag_rate_band: Fraction = 0.5  # earlier profiles: a relative band (now exact p-chart limits, review_volume)
    review_volume: Annotated[int, Field(ge=10, le=10_000_000)] = 500  # studies per review period (p-chart limits)
    psi_limit: Annotated[float, Field(gt=0, le=10)] = 0.2  # score drift: population stability index above this
    drift_p_value: Fraction = 0.01  # score drift: a Kolmogorov-Smirnov p-value below this
    drift_min_scores: Annotated[int, Field(ge=1, le=1_000_000)] = 100  # drift is judged on at least this many scores
    complaint_process: Annotated[str, Field(min_length=1)] | None = None


class RefusalLimit(BaseModel):
    """``study.refusal_limit``: the share of studies the device may refuse (the validation study's
    limit, and the post-market signal's)."""

    model_config = ConfigDict(**SETTINGS)
    refusal_limit: Fraction = 0.05


class _Prevalence(BaseModel):
    model_config = ConfigDict(**SETTINGS)
    expected_prevalence: Fraction | None = None


@dataclass(frozen=True)
class MonitorLimits:
    """What monitor judges against, and where it came from."""

    postmarket: Postmarket
    refusal_limit: float
    prevalence: float | None
    source: str

    def as_dict(self) -> dict:
        return {"psi_limit": self.postmarket.psi_limit, "drift_p_value": self.postmarket.drift_p_value,
                "drift_min_scores": self.postmarket.drift_min_scores, "refusal_limit": self.refusal_limit,
                "expected_prevalence": self.prevalence, "source": self.source}


def read_monitor_limits(profile: str | Path | None) -> MonitorLimits:
    """The limits of a device profile (the defaults of each key it does not set, or without one)."""
    if profile is None:
        return MonitorLimits(Postmarket(), RefusalLimit().refusal_limit, None, "defaults (no --profile given)")
    document = load_yaml(profile, "device profile")
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CxrDeviceError(f"{profile}: a device profile is a mapping of keys to values")
    postmarket = build(Postmarket, str(profile), _section(document, "postmarket", profile), prefix="postmarket.")
    study = _section(document, "study", profile)
    refusal = build(RefusalLimit, str(profile), {k: v for k, v in study.items() if k == "refusal_limit"},
                    prefix="study.")
    prevalence = build(_Prevalence, str(profile), {"expected_prevalence": document.get("expected_prevalence")})
    return MonitorLimits(postmarket, refusal.refusal_limit, prevalence.expected_prevalence,
                         f"{profile}: postmarket, study.refusal_limit, expected_prevalence")


def _section(document: dict, name: str, profile: str | Path) -> dict:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CxrDeviceError(f"{profile}: {name}: expected a mapping of keys to values, got {type(value).__name__}")
    return value
