"""The intended population of the device profile, and what the documents derive from it.

One declared population (``population:`` in the device profile: a name, an age range in years,
sexes, views, modalities, care settings) gives the documents their age bands, subgroup factors
and levels, comorbidity lists, reader qualifications, indications sentence and population
limitations. Lists the profile leaves empty (``null``) come from the defaults of the
population's age group (``profiles/population_defaults.yaml``, package data): pediatric when the
whole range is below 18 years, adult when it starts at 18 or later, mixed otherwise.

Age bands: FDA's pediatric subpopulations (neonates < 1 month, infants 1 month to < 2 years,
children 2 to < 12 years, adolescents 12 to < 18 years here - FDA extends adolescence to 21, the
bands stop at 18 to meet the adult ones) and 20-year adult bands (18-39, 40-59, 60-79, 80+),
kept only where they overlap the population and clipped to its range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cxr_device.validated import SETTINGS
from cxr_device.yaml_io import load_yaml

from .sample_size import SubgroupFactor

Text = Annotated[str, Field(min_length=1)]
ADULT_AGE = 18.0
#: (lower, upper exclusive, name) in years.
PEDIATRIC_BANDS = ((0.0, 1 / 12, "neonates"), (1 / 12, 2.0, "infants"), (2.0, 12.0, "children"),
                   (12.0, 18.0, "adolescents"))
ADULT_BANDS = ((18.0, 40.0, ""), (40.0, 60.0, ""), (60.0, 80.0, ""), (80.0, math.inf, ""))
PEDIATRIC, ADULT, MIXED = "pediatric", "adult", "mixed"


class AgeRange(BaseModel):
    """Ages in years as the input rules read them (``045Y`` is 45, ``066M`` is 5.5), both ends included."""

    model_config = ConfigDict(**SETTINGS)
    min: Annotated[float, Field(ge=0, le=130)]
    max: Annotated[float, Field(ge=0, le=130)]

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Population(BaseModel):
    """The one intended population of the device."""

    model_config = ConfigDict(**SETTINGS)
    name: Text
    age_years: AgeRange
    # True: an image whose age is missing or unreadable is refused (the locked age rule is not
    # optional); False declares age optional: such an image is scored, the range applies when known
    age_required: bool = True
    sexes: list[Text] = Field(min_length=1)
    views: list[Text] = Field(min_length=1)
    modalities: list[Text] = Field(min_length=1)
    settings: list[Text] = Field(min_length=1)
    comorbidities_include: list[Text] | None = None  # None: the age group's defaults
    comorbidities_separate: list[Text] | None = None  # analysed as subgroups or excluded
    reader_qualification: Text | None = None  # None: the age group's default


@dataclass(frozen=True)
class AgeBand:
    """An age band clipped to the population: ``lo <= age < hi`` (``hi`` inclusive for the last)."""

    lo: float
    hi: float
    label: str


def age_group(population: dict[str, Any]) -> str:
    """pediatric, adult or mixed."""
    ages = population["age_years"]
    if ages["max"] < ADULT_AGE:
        return PEDIATRIC
    return ADULT if ages["min"] >= ADULT_AGE else MIXED


def age_bands(population: dict[str, Any]) -> list[AgeBand]:
    """The standard bands that overlap the population's range, clipped to it."""
    lo, hi = population["age_years"]["min"], population["age_years"]["max"]
    bands = []
    for start, end, name in PEDIATRIC_BANDS + ADULT_BANDS:
        if end <= lo or start > hi:
            continue
        a, b = max(start, lo), min(end, hi)
        last = end > hi
        if math.isinf(end) and not last:
            span = f"{a:g}+ years"
        else:
            span = _span(a, b, "to" if last else "to <")
        bands.append(AgeBand(a, b, span + (f" ({name})" if name else "")))
    return bands


def _span(a: float, b: float, joint: str) -> str:
    """``2 to <12 years``, ``0 to <1 month``, ``1 month to <2 years``."""
    sep = " to <" if joint == "to <" else " to "
    if b < 1:
        return f"{a * 12:.0f}{sep}{b * 12:.0f} month{'s' if b * 12 > 1.5 else ''}"
    if 0 < a < 1:
        return f"{a * 12:.0f} month{'s' if a * 12 > 1.5 else ''}{sep}{b:g} years"
    return f"{a:g}{sep}{b:g} years"


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    path = Path(str(resources.files("fda_submission") / "profiles" / "population_defaults.yaml"))
    return load_yaml(path, "population defaults")


def derived(population: dict[str, Any], sites: int) -> dict[str, Any]:
    """Everything the documents take from the population: group, bands, factors, comorbidities,
    reader qualification, the indications sentence and its limitation."""
    group = age_group(population)
    defaults = _defaults()[group]
    bands = age_bands(population)
    factors = [SubgroupFactor("age band", tuple(b.label for b in bands)),
               SubgroupFactor("sex", tuple(population["sexes"])),
               SubgroupFactor("view position", tuple(population["views"]))]
    if sites > 1:
        factors.append(SubgroupFactor("site", tuple(f"site {i + 1}" for i in range(sites))))
    factors = [f for f in factors if len(f.levels) > 1]
    ages = population["age_years"]
    return {
        "group": group,
        "age_text": f"{ages['min']:g} to {ages['max']:g} years",
        "bands": [b.label for b in bands],
        "factors": factors,
        "comorbidities_include": population["comorbidities_include"] or defaults["comorbidities_include"],
        "comorbidities_separate": population["comorbidities_separate"] or defaults["comorbidities_separate"],
        "comorbidities_source": "profile" if population["comorbidities_include"] else f"{group} defaults",
        "reader_qualification": population["reader_qualification"] or defaults["reader_qualification"],
        "reader_source": "profile" if population["reader_qualification"] else f"{group} defaults",
        "indications": (f"For use on {_either(population['modalities'])} frontal ({_either(population['views'])}) "
                        f"chest radiographs of {population['name']}, aged {ages['min']:g} to {ages['max']:g} years, "
                        f"{_both(population['sexes'])}, in {_either(population['settings'])} settings."),
    }


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _both(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
