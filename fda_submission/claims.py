"""The device's one claim (``claims.yaml``): CADt - triage and notification under 21 CFR 892.2080,
product code QFM - or CADe - detection under 21 CFR 892.2070, product code MYN.

The profile names the claim (``claim.type``); the regulation and the product code follow from it
unless the profile sets them, and a pair that belongs to the other claim is a finding
(:func:`claim_findings`). Every document takes its wording from :func:`claim_wording`: the intended
use (when the profile leaves ``intended_use`` null), the role, the workflow, the labeling's
warnings and the evidence the validation plan must collect. :func:`other_claim_statements` finds
text (in a rendered document or a profile value) that says what the other claim says.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from cxr_device.yaml_io import load_yaml

CLAIMS_FILE = "claims.yaml"
FINDING = "pneumonia"


@cache
def claims() -> dict[str, dict]:
    """Every claim of ``claims.yaml`` (package data), by type."""
    return load_yaml(Path(str(resources.files("fda_submission") / CLAIMS_FILE)), "claims file")


def implied(claim_type: str) -> dict[str, str]:
    """The regulation and product code a claim implies."""
    entry = claims()[claim_type]
    return {"regulation": entry["regulation"], "product_code": entry["product_code"]}


def claim_wording(profile: dict, device_name: str) -> dict[str, Any]:
    """The claim's wording for this profile: every ``{placeholder}`` of claims.yaml filled in."""
    kind = profile["claim"]["type"]
    entry = claims()[kind]
    ages = profile["population"]["age_years"]
    words = {"device": device_name, "finding": FINDING, "population": profile["population"]["name"],
             "ages": f"{ages['min']:g} to {ages['max']:g} years", "users": profile["user"],
             "readers": profile["readers"]}

    def fill(text: str) -> str:
        return " ".join(str(text).format(**words).split())

    regulation = profile["claim"]["regulation"] or entry["regulation"]
    product_code = profile["claim"]["product_code"] or entry["product_code"]
    return {"type": kind, "name": entry["name"], "short": entry["short"], "regulation": regulation,
            "regulation_title": entry["regulation_title"], "product_code": product_code,
            "predicate_pathway": fill(entry["predicate_pathway"]),
            "intended_use": profile["intended_use"] or fill(entry["intended_use"]),
            "intended_use_source": "profile: intended_use" if profile["intended_use"] else f"claims.yaml: {kind}",
            "role": fill(entry["role"]), "workflow": profile["clinical_workflow"] or fill(entry["workflow"]),
            "labeling_warnings": [fill(w) for w in entry["labeling_warnings"]],
            "evidence": [{"id": e["id"], "text": fill(e["text"])} for e in entry["evidence"]]}


@dataclass(frozen=True)
class Statement:
    """Text that says what the other claim says."""

    says: str
    quote: str


def other_claim_statements(claim_type: str, text: str) -> list[Statement]:
    """Every statement of the other claim in ``text`` (one per pattern), quoting its sentence."""
    out = []
    for item in claims()[claim_type].get("forbidden", []):  # each claim lists the other claim's statements
        match = re.search(item["pattern"], text, re.IGNORECASE)
        if match:
            start = max(text.rfind("\n", 0, match.start()), text.rfind(". ", 0, match.start())) + 1
            end = min(i for i in (text.find("\n", match.end()), text.find(". ", match.end()), len(text)) if i >= 0)
            out.append(Statement(item["says"], text[start:end].strip()[:200]))
    return out


def pair_contradiction(claim: dict) -> list[tuple[str, str, str]]:
    """(field, value, the claim it belongs to) for a regulation or product code of the other claim."""
    out = []
    for kind, entry in claims().items():
        if kind == claim["type"]:
            continue
        for key in ("regulation", "product_code"):
            value = claim.get(key)
            if value and _same(value, entry[key]):
                out.append((key, value, kind))
    return out


def _same(a: str, b: str) -> bool:
    """The same regulation section (``892.2080`` in any spelling) or product code (any case)."""
    section = re.compile(r"\d{3}\.\d{3,4}")
    found_a, found_b = section.search(a), section.search(b)
    if found_a and found_b:
        return found_a.group(0) == found_b.group(0)
    return a.strip().upper() == b.strip().upper()
