"""Typed settings at the boundary: pydantic's validation errors turned into messages a user can act on.

Settings classes are pydantic dataclasses (types and bounds checked when they are built, lax
enough that YAML's ``lr: 1e-4`` - a string to PyYAML - is read as the number it means, strict
enough that ``batch_size: 16.7`` is refused); this module names the file and the field when a
value does not fit.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from .errors import CxrDeviceError

T = TypeVar("T")
#: pydantic settings shared by every settings class: unknown keys are errors, and so are NaN and
#: infinity (``lr: .inf`` is no learning rate).
SETTINGS = ConfigDict(extra="forbid", allow_inf_nan=False)
#: A seed every random generator of the stack accepts (numpy, torch, scikit-learn).
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
#: A proportion strictly between 0 and 1 (prevalence, power, an acceptance criterion).
Fraction = Annotated[float, Field(gt=0, lt=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


def describe_errors(err: ValidationError, prefix: str = "", limit: int = 5) -> str:
    """``train.lr: Input should be a valid number (got 'abc')``; one clause per problem."""
    parts = []
    for problem in err.errors()[:limit]:
        location = ".".join(str(part) for part in problem["loc"] if not str(part).startswith("function-"))
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
