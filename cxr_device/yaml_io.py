"""The one way cxr-device reads YAML (configs, rules, device profiles): safe and bounded.

* the safe loader only: no ``!!python`` tags, no object construction;
* no aliases: ``*name`` is refused, so a 600-byte "billion laughs" cannot expand into
  hundreds of megabytes (anchors alone are harmless and allowed);
* a size cap and regular files only (a pipe would block for ever);
* every error names the file and the line.
"""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import CxrDeviceError

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
MAX_BYTES = 2 * 1024 * 1024


def load_yaml(path: str | Path, what: str = "YAML file", max_bytes: int = MAX_BYTES) -> Any:
    """Parse ``path``; raise :class:`CxrDeviceError` naming the file (and line) on any problem."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise CxrDeviceError(f"{path}: not a regular file; expected a {what}")
        if info.st_size > max_bytes:
            raise CxrDeviceError(f"{path}: {info.st_size:,} bytes is larger than a {what} can be "
                                 f"({max_bytes:,} bytes at most)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CxrDeviceError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as err:
        raise CxrDeviceError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected a {what}") from None
    except OSError as err:
        raise CxrDeviceError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    return parse_yaml(text, str(path), what)


def parse_yaml(text: str, label: str, what: str = "YAML document") -> Any:
    """Parse YAML text safely (see the module docstring); ``label`` names it in errors."""
    try:
        for event in yaml.parse(text, Loader=SAFE_LOADER):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise CxrDeviceError(f"{label}: line {mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                                     f"allowed in a {what}; write the value out")
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as err:
        where = f"line {err.problem_mark.line + 1}: " if getattr(err, "problem_mark", None) else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CxrDeviceError(f"{label}: {where}not valid YAML ({problem}); expected a {what}") from None
