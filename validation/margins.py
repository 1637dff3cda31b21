"""Non-inferiority margins of the PCCP (``pccp.margins`` of the device profile) and the verdict.

A retrained (candidate) device is accepted against the released (baseline) one when, on the same
sequestered inputs, the lower 95% bound of every judged difference (candidate - baseline) is
strictly above its margin, and the candidate does not refuse more of the inputs than allowed.

The verdict is one of:

* ``met``: enough data (below), every judged lower bound above its margin, refusals within
  their allowance;
* ``not met``: enough data, and at least one criterion missed;
* ``not enough data``: the set cannot answer the question - fewer positives or negatives scored
  by both devices than ``min_positives`` / ``min_negatives``; a judged interval is undefined; or,
  for sensitivity and specificity, even a candidate deciding every case exactly as the baseline
  does would have a lower bound at or below the margin on this set (it is too small to show
  non-inferiority at that margin, whatever the candidate does).

Only ``met`` lets a release through (``cxr-device compare`` exits 0).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cxr_device.errors import CxrDeviceError
from cxr_device.validated import SETTINGS, build
from cxr_device.yaml_io import load_yaml

from .paired import PairedTable, newcombe_paired

MET, NOT_MET, NOT_ENOUGH_DATA = "met", "not met", "not enough data"
Margin = Annotated[float, Field(ge=-1, le=0)]
ENDPOINTS = ("auroc", "sensitivity", "specificity")


class Margins(BaseModel):
    """Non-inferiority margins of a retrained device, as differences candidate - baseline: the lower
    95% bound of each must be above its margin (null: not judged)."""

    model_config = ConfigDict(**SETTINGS)
    auroc: Margin | None = -0.02  # paired DeLong interval of the AUROC difference
    sensitivity: Margin | None = -0.05  # Newcombe (method 10) interval, each device at its own locked threshold
    specificity: Margin | None = -0.05
    refusal_increase: Annotated[float, Field(ge=0, le=1)] = 0.01  # share of inputs the candidate may newly leave unscored
    min_positives: Annotated[int, Field(ge=2, le=1_000_000)] = 30  # scored by both devices
    min_negatives: Annotated[int, Field(ge=2, le=1_000_000)] = 30

    @model_validator(mode="after")
    def _something_judged(self) -> Margins:
        if all(getattr(self, name) is None for name in ENDPOINTS):
            raise ValueError("at least one of auroc, sensitivity and specificity needs a margin")
        return self


def read_margins(profile: str | Path | None) -> tuple[Margins, str]:
    """The margins of a device profile's ``pccp.margins`` and where they came from; the defaults
    without a profile, or when the profile does not set them."""
    if profile is None:
        return Margins(), "defaults (no --profile given)"
    document = load_yaml(profile, "device profile")
    if not isinstance(document, dict):
        raise CxrDeviceError(f"{profile}: a device profile is a mapping of keys to values")
    pccp = document.get("pccp")
    if pccp is not None and not isinstance(pccp, dict):
        raise CxrDeviceError(f"{profile}: pccp: expected a mapping of keys to values, got {type(pccp).__name__}")
    given = (pccp or {}).get("margins")
    if given is None:
        return Margins(), f"defaults ({profile} sets no pccp.margins)"
    return build(Margins, str(profile), given, prefix="pccp.margins."), f"{profile}: pccp.margins"


def judge(margins: Margins, auroc: dict, sensitivity: dict, specificity: dict, refusals: dict) -> dict:
    """The verdict and each criterion (margin, lower bound, met) of one comparison; see the module."""
    lacking: list[str] = []
    n_pos, n_neg = auroc["n_positive"], auroc["n_negative"]
    if n_pos < margins.min_positives:
        lacking.append(f"{n_pos} positive(s) scored by both devices, fewer than pccp.margins.min_positives "
                       f"({margins.min_positives})")
    if n_neg < margins.min_negatives:
        lacking.append(f"{n_neg} negative(s) scored by both devices, fewer than pccp.margins.min_negatives "
                       f"({margins.min_negatives})")
    criteria = {}
    for name, result in zip(ENDPOINTS, (auroc, sensitivity, specificity)):
        margin = getattr(margins, name)
        if margin is None:
            continue
        lower = result["ci95"][0]
        defined = lower is not None and math.isfinite(lower)
        row = {"margin": margin, "difference": result["difference"], "lower_bound": lower,
               "method": result.get("interval_method") or result.get("method"), "met": defined and lower > margin}
        if not defined:
            lacking.append(f"{name}: the interval of the difference is undefined")
        elif name != "auroc":
            k, n = result["baseline"]["k"], result["baseline"]["n"]
            floor = newcombe_paired(PairedTable(k, 0, 0, n - k))[0]
            row["lower_bound_if_identical"] = floor
            if floor <= margin:
                lacking.append(f"{name}: even a candidate deciding every case as the baseline does would have a lower "
                               f"bound of {floor:+.4f} on these {n} cases, not above the margin {margin:+g}")
        criteria[name] = row
    if refusals["n_inputs"] == 0:
        lacking.append("no input to score")
    increase = refusals["increase"]
    criteria["refusals"] = {"margin": margins.refusal_increase, "increase": increase,
                            "met": increase is not None and increase <= margins.refusal_increase,
                            "method": "share of inputs the candidate left unscored minus the baseline's share"}
    verdict = NOT_ENOUGH_DATA if lacking else MET if all(c["met"] for c in criteria.values()) else NOT_MET
    return {"verdict": verdict, "criteria": criteria, "not_enough_data": lacking,
            "rule": "met: every judged lower 95% bound of candidate - baseline is strictly above its margin and the "
                    "refusal increase is at most its allowance; not enough data: see not_enough_data"}
