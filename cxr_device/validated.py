"""Typed settings at the boundary: pydantic's validation errors turned into messages a user can act on.

Settings classes are pydantic dataclasses (types and bounds checked when they are built, lax
enough that YAML's ``lr: 1e-4`` - a string to PyYAML - is read as the number it means, strict
enough that ``batch_size: 16.7`` is refused); this module names the file and the field when a
value does not fit, and - with :data:`RANGE` after a bounded ``Field`` - the whole range.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, GetCoreSchemaHandler, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from .errors import CxrDeviceError

T = TypeVar("T")
#: pydantic settings shared by every settings class: unknown keys are errors, and so are NaN and
#: infinity (``lr: .inf`` is no learning rate).
SETTINGS = ConfigDict(extra="forbid", allow_inf_nan=False)
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


class _StatedRange:
    """Annotation marker after ``Field(ge=.., le=..)``: an out-of-range value is refused with the
    whole range, ``Input should be less than or equal to 1; allowed: above 0, up to 1``, instead of
    the one bound it crossed (so a user learns what to write from one message). A whole number
    written as YAML 1.1 leaves ``1e5`` - a string - is read as the number it means, as floats are."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        inner = handler(source)  # the number's schema with the Field's bounds applied
        bounds = {key: inner.get(key) for key in ("ge", "gt", "le", "lt")}
        if not any(value is not None for value in bounds.values()):
            return inner
        allowed = _range_text(**bounds)

        def in_range(value: Any, validate: Any) -> Any:
            try:
                return validate(_whole_number(value) if inner["type"] == "int" else value)
            except ValidationError as err:
                first = err.errors()[0]
                if first["type"] not in _BOUND_ERRORS:
                    raise
                raise PydanticCustomError("out_of_range", "{message}; allowed: {allowed}",
                                          {"message": first["msg"], "allowed": allowed}) from None

        return core_schema.no_info_wrap_validator_function(in_range, inner)


def _whole_number(value: Any) -> Any:
    """``"1e5"`` -> 100000 (what YAML 1.1 leaves as a string); anything else unchanged."""
    if isinstance(value, str) and "e" in value.lower():
        try:
            number = float(value)
        except ValueError:
            return value
        if number.is_integer():
            return int(number)
    return value


#: Put after a ``Field`` with bounds: ``Annotated[int, Field(ge=32, le=2048), RANGE]``.
RANGE = _StatedRange()


def _range_text(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    """``from 32 to 2,048``, ``above 0, up to 1``, ``from 0, below 0.5``, ``at least 1`` ..."""
    lower = f"from {_number(ge)}" if ge is not None else f"above {_number(gt)}" if gt is not None else ""
    upper = f"up to {_number(le)}" if le is not None else f"below {_number(lt)}" if lt is not None else ""
    if lower and upper:
        return f"{lower} {upper[3:]}" if ge is not None and le is not None else f"{lower}, {upper}"
    if lower:
        return lower.replace("from", "at least")
    return upper.replace("up to", "at most")


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


#: A seed every random generator of the stack accepts (numpy, torch, scikit-learn).
Seed = Annotated[int, Field(ge=0, le=2**32 - 1), RANGE]
#: A proportion strictly between 0 and 1 (prevalence, power, an acceptance criterion).
Fraction = Annotated[float, Field(gt=0, lt=1), RANGE]
#: A proportion above 0, up to 1 (a target sensitivity or specificity).
Proportion = Annotated[float, Field(gt=0, le=1), RANGE]
#: Bootstrap replicates: enough for a percentile interval, few enough to fit in memory and time.
Replicates = Annotated[int, Field(ge=100, le=100_000), RANGE]


def check_setting(kind: Any, value: Any, name: str) -> Any:
    """``value`` validated as ``kind`` (:data:`Replicates`, say); a :class:`CxrDeviceError`
    naming the setting ``name`` otherwise (for values given as arguments, not in a settings class)."""
    try:
        return TypeAdapter(kind, config=SETTINGS).validate_python(value)
    except ValidationError as err:
        raise CxrDeviceError(describe_errors(err, f"{name}")) from None


def describe_errors(err: ValidationError, prefix: str = "", limit: int = 5, as_flags: bool = False) -> str:
    """``train.lr: Input should be a valid number (got 'abc')``; one clause per problem. With
    ``as_flags`` (settings built from command-line flags) a field is named as its flag: ``--lr``."""
    parts = []
    for problem in err.errors()[:limit]:
        names = [str(part) for part in problem["loc"] if not str(part).startswith("function-")]
        if as_flags and names and not names[-1].isdigit():
            names = ["--" + names[-1].replace("_", "-")]
        location = ".".join(names)
        location = f"{prefix}{location}" if location else prefix.rstrip(".") or "value"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown key"
        elif problem.get("input", ...) is None:
            message += " (the key has no value)"
        elif "input" in problem and not isinstance(problem["input"], (dict, list)):
            message += f" (got {_short(problem['input'])})"
            if problem["type"] == "string_type" and isinstance(problem["input"], (int, float)):
                message += "; write it in quotes"  # version: 1.10 would otherwise become 1.1
        parts.append(f"{location}: {message}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more problem(s)" if more > 0 else "")


def build(cls: type[T], where: str, values: Any, prefix: str = "") -> T:
    """``cls(**values)``, with a :class:`CxrDeviceError` naming ``where`` and the field on failure."""
    if not isinstance(values, dict):
        raise CxrDeviceError(f"{where}: {prefix.rstrip('.') or 'settings'}: expected a mapping of keys to values, "
                             f"got {type(values).__name__}")
    try:
        return cls(**values)
    except ValidationError as err:
        raise CxrDeviceError(f"{where}: {describe_errors(err, prefix)}") from None
    except TypeError as err:  # an unknown keyword on a class without pydantic
        raise CxrDeviceError(f"{where}: {prefix}{err}") from None


def check_keys(where: str, values: Any, allowed: Iterable[str], prefix: str = "", hint: str = "") -> dict:
    """``values`` as a new dict (``None`` is empty) when it is a mapping with only ``allowed`` keys.

    Otherwise a :class:`CxrDeviceError` starting with ``where`` that lists the unknown keys and
    the allowed ones, each written ``prefix + key``; ``hint`` is appended to that message.
    """
    if values is None:
        return {}
    if not isinstance(values, dict):
        section = f"{prefix.rstrip('.')}: " if prefix else ""
        raise CxrDeviceError(f"{where}: {section}expected a mapping of keys to values, got {type(values).__name__} "
                             f"{_short(values)}")
    allowed = set(allowed)
    unknown = sorted(set(values) - allowed, key=str)
    if unknown:
        raise CxrDeviceError(f"{where}: unknown key(s) {', '.join(prefix + str(k) for k in unknown)}; "
                             f"allowed: {', '.join(prefix + k for k in sorted(allowed))}{hint}")
    return dict(values)


def field_names(cls: type) -> set[str]:
    """The field names of a (pydantic) dataclass: the keys its section of a YAML file may have."""
    return {f.name for f in fields(cls)}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
