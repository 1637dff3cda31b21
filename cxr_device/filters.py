"""Inclusion filters on age, sex and view position; each removed row is logged with its reason."""
from __future__ import annotations

from typing import Annotated

import pandas as pd
from pydantic import Field
from pydantic.dataclasses import dataclass

from . import exclusions as ex
from .errors import CxrDeviceError
from .validated import RANGE, SETTINGS


@dataclass(frozen=True, config=SETTINGS)
class Filters:
    """Inclusion criteria. Ages are in years and inclusive; ``None`` means no limit."""

    min_age: Annotated[float, Field(ge=0, le=150), RANGE] | None = None
    max_age: Annotated[float, Field(ge=0, le=150), RANGE] | None = None
    sexes: tuple[str, ...] | None = None
    views: tuple[str, ...] | None = None

    def as_dict(self) -> dict:
        return {
            "min_age": self.min_age,
            "max_age": self.max_age,
            "sexes": list(self.sexes) if self.sexes else None,
            "views": list(self.views) if self.views else None,
        }


def apply_filters(frame: pd.DataFrame, filters: Filters, log: ex.ExclusionLog) -> pd.DataFrame:
    """Keep exactly the rows that satisfy every criterion; log every other row once.

    Raises :class:`CxrDeviceError` when a criterion asks about a field the dataset does not
    record at all (e.g. ``--sex`` on the pediatric class-folder set).
    """
    if filters.min_age is not None and filters.max_age is not None and filters.min_age > filters.max_age:
        raise CxrDeviceError(f"--min-age {filters.min_age:g} is above --max-age {filters.max_age:g}")
    if filters.min_age is not None or filters.max_age is not None:
        _require(frame, "age_years", "--min-age/--max-age")
        age = frame["age_years"]
        frame = _drop(frame, age.isna(), ex.AGE_UNKNOWN, "age not recorded", log)
        if filters.min_age is not None:
            frame = _drop(frame, frame["age_years"] < filters.min_age, ex.AGE_BELOW_MIN,
                          f"age below --min-age {filters.min_age:g}", log)
        if filters.max_age is not None:
            frame = _drop(frame, frame["age_years"] > filters.max_age, ex.AGE_ABOVE_MAX,
                          f"age above --max-age {filters.max_age:g}", log)
    for column, wanted, reason, flag in (
        ("sex", filters.sexes, ex.SEX_NOT_SELECTED, "--sex"),
        ("view", filters.views, ex.VIEW_NOT_SELECTED, "--views"),
    ):
        if wanted:
            _require(frame, column, flag)
            keep = {w.upper() for w in wanted}
            frame = _drop(frame, ~frame[column].isin(keep), reason,
                          f"{column} not in {flag} {','.join(sorted(keep))}", log)
    return frame


def _require(frame: pd.DataFrame, column: str, flag: str) -> None:
    values = frame[column]
    recorded = values.notna() & values.astype(str).ne("")
    if len(frame) and not recorded.any():
        raise CxrDeviceError(f"{flag} was given but this dataset records no {column.replace('_years', '')}")


def _drop(frame: pd.DataFrame, bad: pd.Series, reason: str, detail: str, log: ex.ExclusionLog) -> pd.DataFrame:
    log.add(frame[bad], reason, detail)
    return frame[~bad]
