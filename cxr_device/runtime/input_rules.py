"""The device's input-rules engine: DICOM-header rules from YAML, findings for a dataset.

A rule set is data (see ``rules/chest_radiograph.yaml`` for the format); this module loads it,
validates it at the boundary (unknown keys, bad severities, unknown DICOM keywords are errors
that name the rule), and evaluates it against a header. Evaluation never raises: a missing
attribute is a finding of its own, an unreadable value is a finding naming the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..ages import parse_age_years
from ..errors import CxrDeviceError
from ..hashing import sha256_file
from ..validated import describe_errors
from ..yaml_io import load_yaml

ERROR, WARNING = "error", "warning"
DEFAULT_RULES = "chest_radiograph.yaml"
#: Attributes whose values are protected health information: never printed without --show-phi.
PHI_KEYWORDS = frozenset({"PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                          "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers",
                          "AccessionNumber", "InstitutionName", "ReferringPhysicianName"})
_RULE_KEYS = {"id", "attributes", "allowed", "forbidden", "range", "age_range", "synonyms",
              "severity", "optional", "message"}
HIDDEN = "<hidden: PHI, use --show-phi>"


class RulesError(CxrDeviceError):
    """A rules file cannot be used; the message names the file and the rule."""


@dataclass(frozen=True)
class Finding:
    """One problem with one file's header."""

    rule: str
    severity: str
    attribute: str
    found: str | None  # None: the attribute is missing
    expected: str
    message: str


@dataclass(frozen=True)
class Rule:
    """One check on one attribute (or the first present of several)."""

    id: str
    attributes: tuple[str, ...]
    severity: str
    message: str = ""
    allowed: frozenset[str] | None = None
    forbidden: frozenset[str] | None = None
    range: tuple[float, float] | None = None
    age_range: tuple[float, float] | None = None
    synonyms: dict[str, str] = field(default_factory=dict)
    optional: bool = False

    def expected(self) -> str:
        """What a passing value looks like, in words."""
        if self.allowed is not None:
            values = sorted(self.allowed)
            return values[0] if len(values) == 1 else "one of " + ", ".join(values)
        if self.forbidden is not None:
            return "not " + " or ".join(sorted(self.forbidden))
        lo, hi = self.range or self.age_range  # type: ignore[misc]
        unit = " years" if self.age_range else ""
        return f"{lo:g} to {hi:g}{unit}" if lo != hi else f"{lo:g}{unit}"

    def evaluate(self, ds: Dataset, show_phi: bool = False) -> Finding | None:
        """The finding this rule makes on ``ds``, or None when it passes."""
        keyword, raw = _first_present(ds, self.attributes)
        if keyword is None:
            if self.optional:
                return None
            names = " or ".join(f"{k} {_tag(k)}" for k in self.attributes)
            return self._finding(self.attributes[0], None, f"{names} is missing; expected {self.expected()}")
        normalised = _normalise(raw)
        value = self.synonyms.get(normalised, normalised)
        shown = HIDDEN if keyword in PHI_KEYWORDS and not show_phi else value
        # where the value is and how it is quoted are only worked out for a finding (speed)
        if self.age_range is not None:
            years = parse_age_years(value)
            if math.isnan(years):  # unknown, like a missing age: refused unless the rule is optional
                finding = self._finding(keyword, shown, f"{_where(keyword)} {_quoted(keyword, shown)} cannot be read "
                                                        "as an age (expected e.g. 045Y, 006M, 010D or 81)")
                return replace(finding, severity=WARNING) if self.optional else finding
            lo, hi = self.age_range
            if not lo <= years <= hi:
                return self._finding(keyword, shown, f"{_where(keyword)} is {_quoted(keyword, shown)} "
                                                     f"({years:.3g} years); expected {self.expected()}")
            return None
        if self.range is not None:
            try:
                number = float(value)
            except ValueError:
                return self._finding(keyword, shown, f"{_where(keyword)} {_quoted(keyword, shown)} is not a "
                                                     f"number; expected {self.expected()}")
            lo, hi = self.range
            if not lo <= number <= hi:
                return self._finding(keyword, shown, f"{_where(keyword)} is {shown}; expected {self.expected()}")
            return None
        if self.allowed is not None and value not in self.allowed:
            return self._finding(keyword, shown, f"{_where(keyword)} is {_quoted(keyword, shown)}; "
                                                 f"expected {self.expected()}")
        if self.forbidden is not None and value in self.forbidden:
            return self._finding(keyword, shown, f"{_where(keyword)} is {_quoted(keyword, shown)}")
        return None

    def _finding(self, attribute: str, found: str | None, what: str) -> Finding:
        message = f"{what}: {self.message}" if self.message else what
        return Finding(self.id, self.severity, attribute, found, self.expected(), message)


@dataclass(frozen=True)
class RuleSet:
    """A named, versioned list of rules with the provenance of the file they came from."""

    name: str
    rules: tuple[Rule, ...]
    source: str
    sha256: str
    version: Any = None

    @cached_property
    def keywords(self) -> tuple[str, ...]:
        """Every attribute keyword the rules look at, each once, in rule order (computed once)."""
        return tuple(dict.fromkeys(k for rule in self.rules for k in rule.attributes))

    @cached_property
    def tags(self) -> frozenset[int]:
        """The tags of :attr:`keywords`: what a header reader must keep for these rules."""
        return frozenset(tag_for_keyword(k) for k in self.keywords)

    def evaluate(self, ds: Dataset, show_phi: bool = False) -> list[Finding]:
        """Every finding of every rule, in rule order. Never raises on odd header values."""
        findings = []
        for rule in self.rules:
            try:
                finding = rule.evaluate(ds, show_phi)
            except Exception as err:  # a header value pydicom cannot even convert
                finding = rule._finding(rule.attributes[0], "?", f"{rule.attributes[0]} could not be read ({err})")
            if finding is not None:
                findings.append(finding)
        return findings


def default_rules_path() -> Path:
    """The shipped chest-radiograph rules file (package data)."""
    return Path(str(resources.files("cxr_device.runtime") / "rules" / DEFAULT_RULES))


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load a rules YAML (default: the chest-radiograph rules shipped in the package)."""
    if path is None:
        return _load(default_rules_path(), f"(built-in) {DEFAULT_RULES}")
    return _load(Path(path), str(path))


def _load(path: Path, label: str) -> RuleSet:
    try:
        document = load_yaml(path, "rules file")
    except RulesError:
        raise
    except CxrDeviceError as err:
        raise RulesError(f"{err} (not a readable YAML rules file)") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list) or not document["rules"]:
        raise RulesError(f"{path}: expected a mapping with a non-empty 'rules' list")
    rules = tuple(_parse_rule(path, i, entry) for i, entry in enumerate(document["rules"]))
    ids = [r.id for r in rules]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise RulesError(f"{path}: duplicate rule id(s) {', '.join(duplicated)}")
    version = document.get("version")
    if version is not None and not isinstance(version, (str, int, float)):
        raise RulesError(f"{path}: 'version' must be a number or text, got {type(version).__name__}")
    return RuleSet(str(document.get("name", path.stem)), rules, label, sha256_file(path), version)


Scalar = Union[StrictStr, StrictInt, StrictFloat]


class _Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float = -math.inf
    max: float = math.inf


class _RuleEntry(BaseModel):
    """One rule as written in YAML: types checked before anything is evaluated."""

    model_config = ConfigDict(extra="forbid")
    id: Union[StrictStr, StrictInt]
    attributes: Union[StrictStr, list[StrictStr]]
    allowed: Optional[list[Scalar]] = None
    forbidden: Optional[list[Scalar]] = None
    range: Optional[_Bounds] = None
    age_range: Optional[_Bounds] = None
    synonyms: Optional[dict[StrictStr, Scalar]] = None
    severity: StrictStr = ERROR
    optional: StrictBool = False
    message: StrictStr = ""


def _parse_rule(path: Path, index: int, entry: Any) -> Rule:
    where = f"{path}: rule #{index + 1}"
    if not isinstance(entry, dict):
        raise RulesError(f"{where}: expected a mapping, got {type(entry).__name__}")
    where = f"{path}: rule '{entry.get('id', f'#{index + 1}')}'"
    unknown = set(map(str, entry)) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_RULE_KEYS))}")
    if "id" not in entry or "attributes" not in entry:
        raise RulesError(f"{where}: needs 'id' and 'attributes'")
    try:
        rule = _RuleEntry.model_validate(entry)
    except ValidationError as err:
        raise RulesError(f"{where}: {describe_errors(err)}") from None
    attributes = (rule.attributes,) if isinstance(rule.attributes, str) else tuple(rule.attributes)
    bad = [a for a in attributes if tag_for_keyword(a) is None]
    if bad or not attributes:
        raise RulesError(f"{where}: unknown DICOM keyword(s) {', '.join(map(str, bad)) or '(none given)'}")
    severity = rule.severity.lower()
    if severity not in (ERROR, WARNING):
        raise RulesError(f"{where}: severity must be 'error' or 'warning', got {rule.severity!r}")
    checks = [k for k in ("allowed", "forbidden", "range", "age_range") if getattr(rule, k) is not None]
    if len(checks) != 1:
        raise RulesError(f"{where}: give exactly one of allowed, forbidden, range, age_range (got {checks or 'none'})")
    values = {k: frozenset(_normalise(v) for v in getattr(rule, k))
              for k in ("allowed", "forbidden") if getattr(rule, k) is not None}
    bounds = {k: _bounds(where, getattr(rule, k)) for k in ("range", "age_range") if getattr(rule, k) is not None}
    synonyms = {_normalise(k): _normalise(v) for k, v in (rule.synonyms or {}).items()}
    return Rule(id=str(rule.id), attributes=attributes, severity=severity, message=rule.message,
                synonyms=synonyms, optional=rule.optional, **values, **bounds)


def _bounds(where: str, spec: _Bounds) -> tuple[float, float]:
    if math.isnan(spec.min) or math.isnan(spec.max):
        raise RulesError(f"{where}: a range bound is not a number")
    if spec.min > spec.max:
        raise RulesError(f"{where}: range min {spec.min:g} is above max {spec.max:g}")
    return spec.min, spec.max


def _first_present(ds: Dataset, keywords: tuple[str, ...]) -> tuple[str | None, Any]:
    for keyword in keywords:
        value = ds.get(keyword)
        if value is not None and str(value).strip() != "":
            return keyword, value
    return None, None


def _normalise(value: Any) -> str:
    """Strip and upper-case; multi-valued attributes joined with a backslash, as DICOM does."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_normalise(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().upper()


def _quoted(keyword: str, value: str) -> str:
    """``'CT'``; UIDs also get their registered name: ``'1.2...7' (Secondary Capture Image Storage)``."""
    if keyword.endswith("UID") and UID(value).is_valid and UID(value).name != value:
        return f"'{value}' ({UID(value).name})"
    return f"'{value}'"


def _where(keyword: str) -> str:
    """``Modality (0008,0060)``: how a finding names the attribute it is about."""
    return f"{keyword} {_tag(keyword)}"


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""
