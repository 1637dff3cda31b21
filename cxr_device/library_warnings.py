"""Warnings of the DICOM libraries: counted and routed into the product's own output, never quoted.

pydicom, highdicom and pynetdicom warn about odd header values by quoting them (a PatientID, a
UID, a site-packages path): patient data must not reach a terminal or a log that way. So
:func:`route_library_warnings` replaces Python's warning display for the process: a warning
raised inside one of these libraries is reported once per place in the library (module, line
and category), as a line that names where it came from and withholds the text; other warnings
are shown as usual. :class:`LibraryWarnings` counts the warnings of one piece of work (building
one result) without showing them.
"""
from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

LIBRARIES = ("pydicom", "highdicom", "pynetdicom")
_seen: Counter = Counter()
_lock = threading.Lock()


def library_of(filename: str) -> str | None:
    """The DICOM library a warning was raised in (from the file that raised it), or None."""
    parts = Path(filename).parts
    return next((name for name in LIBRARIES if name in parts), None)


def route_library_warnings(report: Callable[[str], None], show_text: bool = False) -> None:
    """From now on, report each place in a DICOM library that warns once, through ``report``,
    with the warning's text withheld (``show_text``: included, for ``--debug``)."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        library = library_of(str(filename))
        if library is None:
            previous(message, category, filename, lineno, file, line)
            return
        key = (library, Path(str(filename)).stem, lineno, category.__name__)
        with _lock:
            _seen[key] += 1
            first = _seen[key] == 1
        if first:
            text = f": {message}" if show_text else " (text withheld: it may quote header values)"
            report(f"{library} ({key[1]}) warned {category.__name__}{text}")

    warnings.showwarning = show


def routed_counts() -> dict[str, int]:
    """How often each library place warned since routing began (``library.module:line Category``)."""
    with _lock:
        return {f"{lib}.{module}:{line} {category}": n for (lib, module, line, category), n in _seen.items()}


class LibraryWarnings:
    """Counts (and swallows) the warnings raised while it is entered; may be entered repeatedly."""

    def __init__(self) -> None:
        self.count = 0
        self.by_library: Counter = Counter()
        self._stack: list = []

    def __enter__(self) -> LibraryWarnings:
        manager = warnings.catch_warnings(record=True)
        caught = manager.__enter__()
        warnings.simplefilter("always")
        self._stack.append((manager, caught))
        return self

    def __exit__(self, *exc) -> bool:
        manager, caught = self._stack.pop()
        manager.__exit__(*exc)
        for warning in caught:
            self.count += 1
            self.by_library[library_of(warning.filename) or "other"] += 1
        return False
