"""Typed settings at the boundary: pydantic's validation errors turned into messages a user can act on.

Settings classes are pydantic dataclasses (types and bounds checked when they are built, lax
enough that YAML's ``lr: 1e-4`` - a string to PyYAML - is read as the number it means); this
module names the file and the field when a value does not fit.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from .errors import CxrDeviceError

T = TypeVar("T")
#: pydantic settings shared by every settings class: unknown keys are errors.
STRICT_KEYS = {"extra": "forbid"}


def describe_errors(err: ValidationError, prefix: str = "", limit: int = 5) -> str:
    """``train.lr: Input should be a valid number (got 'abc')``; one clause per problem."""
    parts = []
    for problem in err.errors()[:limit]:
        location = ".".join(str(part) for part in problem["loc"] if not str(part).startswith("function-"))
        location = f"{prefix}{location}" if location else prefix.rstrip(".") or "value"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden" or problem["type"] == "unexpected_keyword_argument":
            message = "unknown key"
        elif "input" in problem and not isinstance(problem["input"], (dict, list)):
            message += f" (got {_short(problem['input'])})"
        parts.append(f"{location}: {message}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more problem(s)" if more > 0 else "")


def build(cls: type[T], where: str, values: dict[str, Any], prefix: str = "") -> T:
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
