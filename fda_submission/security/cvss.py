"""CVSS v3.1 base scores, computed from the vector (FIRST, "CVSS v3.1 Specification", section 7).

The score rates how exploitable a weakness is and what it does to confidentiality, integrity
and availability of the software; it is not the patient harm, which the risk file rates
(each threat names its hazards). No scoring library is a dependency of the product; the
base equations are short and are checked against published scores in ``tests/test_security.py``.
"""
from __future__ import annotations

import math
import re

PREFIX = "CVSS:3.1/"
_WEIGHTS = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_PRIVILEGES = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}
METRICS = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")
_VECTOR = re.compile(r"^CVSS:3\.1/" + "/".join(f"{m}:([A-Z])" for m in METRICS) + "$")
#: Qualitative severity rating scale (specification, section 5).
SEVERITIES = ((0.0, "None"), (3.9, "Low"), (6.9, "Medium"), (8.9, "High"), (10.0, "Critical"))
NAMES = {"AV": {"N": "network", "A": "adjacent network", "L": "local", "P": "physical"},
         "AC": {"L": "low", "H": "high"}, "PR": {"N": "none", "L": "low", "H": "high"},
         "UI": {"N": "none", "R": "required"}, "S": {"U": "unchanged", "C": "changed"},
         "C": {"H": "high", "L": "low", "N": "none"}, "I": {"H": "high", "L": "low", "N": "none"},
         "A": {"H": "high", "L": "low", "N": "none"}}


class VectorError(ValueError):
    """A string that is not a CVSS v3.1 base vector."""


def parse(vector: str) -> dict[str, str]:
    """``CVSS:3.1/AV:N/AC:L/...`` -> ``{"AV": "N", ...}``; every base metric, in order, required."""
    match = _VECTOR.match(vector.strip())
    if not match:
        raise VectorError(f"{vector!r} is not a CVSS v3.1 base vector (CVSS:3.1/AV:_/AC:_/PR:_/UI:_/S:_/C:_/I:_/A:_)")
    values = dict(zip(METRICS, match.groups()))
    for metric, value in values.items():
        if value not in (NAMES[metric]):
            raise VectorError(f"{vector!r}: {metric}:{value} is not a value of {metric}")
    return values


def roundup(value: float) -> float:
    """The specification's Roundup: the smallest number of one decimal place >= ``value``,
    computed on integers so that floating-point error cannot push it up (Appendix A)."""
    whole = round(value * 100_000)
    return whole / 100_000.0 if whole % 10_000 == 0 else (math.floor(whole / 10_000) + 1) / 10.0


def scores(vector: str) -> dict:
    """``{"vector", "base", "impact", "exploitability", "severity", "metrics"}`` of a base vector:
    the base score and its two sub-scores (rounded to one decimal) and the severity rating."""
    v = parse(vector)
    changed = v["S"] == "C"
    iss = 1 - (1 - _WEIGHTS["C"][v["C"]]) * (1 - _WEIGHTS["I"][v["I"]]) * (1 - _WEIGHTS["A"][v["A"]])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = 8.22 * _WEIGHTS["AV"][v["AV"]] * _WEIGHTS["AC"][v["AC"]] * \
        _PRIVILEGES[v["S"]][v["PR"]] * _WEIGHTS["UI"][v["UI"]]
    if impact <= 0:
        base = 0.0
    else:
        base = roundup(min(1.08 * (impact + exploitability), 10)) if changed else roundup(min(impact + exploitability, 10))
    return {"vector": vector.strip(), "base": base, "impact": round(max(impact, 0.0), 1),
            "exploitability": round(exploitability, 1), "severity": severity(base),
            "metrics": {m: NAMES[m][v[m]] for m in METRICS}}


def severity(base: float) -> str:
    """None, Low, Medium, High or Critical."""
    for upper, label in SEVERITIES:
        if base <= upper:
            return label
    raise ValueError(f"a CVSS base score is at most 10, not {base}")
