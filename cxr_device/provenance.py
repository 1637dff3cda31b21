"""What produced an output: package version and the versions of the software it ran on."""
from __future__ import annotations

import platform
import sys
from typing import Any

from . import __version__

#: The file a generator of synthetic data writes beside it; every later step records its presence.
SYNTHETIC_MARKER = "synthetic.json"


def producer(step: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deterministic record of the producing step (no timestamps, so outputs stay byte-stable)."""
    import numpy
    import pandas

    return {
        "tool": "cxr-device",
        "version": __version__,
        "step": step,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "platform": sys.platform,
        "settings": settings or {},
    }
