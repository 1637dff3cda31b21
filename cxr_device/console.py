"""What commands share at the edge: input listing, output locations checked before work starts,
and reports written to a file or the terminal.

Output locations are checked up front, so a command that cannot write its result says so
before it spends minutes working: a file where a folder is expected (or the reverse), a folder
that cannot be created or written, a location under ``/proc`` or ``/sys``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import CxrDeviceError
from .runtime.header_check import collect_paths
from .safe_text import terminal

_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


class OutputError(CxrDeviceError):
    """An output location cannot be used; the message names it and says what to do."""


def _refuse_system(path: Path) -> None:
    resolved = str(path.resolve())
    root = next((r for r in _SYSTEM_ROOTS if resolved == r or resolved.startswith(r + "/")), None)
    if root:
        raise OutputError(f"{path}: is under {root}, a system folder; choose a location in your own folders")


def output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) if needed and check that files can be written into it."""
    path = Path(path)
    _refuse_system(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; give a folder for the outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot create the output folder ({err.strerror or err})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the output folder is not writable")
    return path


def check_output_dir(path: str | Path) -> Path:
    """Refuse, without creating anything, a folder location that could not be created or written:
    what a command checks before it starts work that takes time."""
    path = Path(path)
    _refuse_system(path)
    existing = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), Path("."))
    if existing == path:
        if not path.is_dir():
            raise OutputError(f"{path}: exists and is not a folder; give a folder for the outputs")
    elif not existing.is_dir():
        raise OutputError(f"{path}: cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot be written: {existing} is not writable")
    return path


def output_file(path: str | Path) -> Path:
    """Check that ``path`` can be written as a file (its folder is created if needed)."""
    path = Path(path)
    _refuse_system(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for the report")
    output_dir(path.parent if str(path.parent) else Path("."))
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: exists and is not writable")
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file, with an :class:`OutputError` naming it when that fails."""
    path = output_file(path)
    try:
        path.write_text(text)
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


def input_files(inputs: list[str]) -> list[Path]:
    """Files named or found under folders; none at all is a usage error (exit 2)."""
    paths = collect_paths(inputs)
    if not paths:
        raise CxrDeviceError(f"no files found in {' '.join(inputs)}")
    return paths


def emit(report: str, out: Path | None, summary: str, table: bool) -> None:
    """The report to ``out`` (summary to stderr) or to stdout (summary to stderr unless a table has it)."""
    if out:
        write_text(out, report)
        print(f"{terminal(summary)} -> {terminal(out)}", file=sys.stderr)
        return
    sys.stdout.write(report)
    if not table:
        print(terminal(summary), file=sys.stderr)
