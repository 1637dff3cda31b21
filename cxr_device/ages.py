"""Ages as they appear in NIH metadata and DICOM headers, in years."""
from __future__ import annotations

import re

_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*$")
_UNITS = {"": 1.0, "Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}


def parse_age_years(raw: str) -> float:
    """``"58"``, ``"058Y"`` -> 58.0; ``"006M"`` -> 0.5; ``"010D"`` -> 0.0274; anything else -> NaN.

    Accepts the DICOM AS form (``nnnD/W/M/Y``) and the bare number of years that NIH
    metadata and some DICOM exports write.
    """
    match = _AGE_RE.match(str(raw).upper())
    if match is None:
        return float("nan")
    return float(match.group(1)) / _UNITS[match.group(2)]
