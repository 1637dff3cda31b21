"""What the machine has, checked before a big allocation: memory and disk space.

A setting that asks for more than the machine has should be refused with the estimate, what is
there and which setting to change - not end in a MemoryError, a process killed by the kernel,
or a memory-mapped write into a full disk (which kills the process with SIGBUS). The estimates
are deliberately simple (bytes of the arrays or files to be made); :func:`require` compares
them with what is available now.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import CxrDeviceError


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo, else the
    physical memory); None when the system says neither."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def free_disk(path: str | Path) -> int:
    """Bytes free on the file system that holds ``path`` (or its nearest existing parent)."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def size_text(n_bytes: float) -> str:
    """``1.2 GB``, ``350 MB``: for messages."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes / 1e3:.0f} kB"


def require_memory(needed: float, what: str, advice: str) -> None:
    """Refuse, naming ``what`` and ``advice``, when ``needed`` bytes exceed the available memory."""
    have = available_memory()
    if have is not None and needed > have:
        raise CxrDeviceError(f"{what} needs about {size_text(needed)} of memory but this machine has "
                             f"{size_text(have)} available; {advice}")


def require_disk(needed: float, where: str | Path, what: str, advice: str) -> None:
    """Refuse, naming ``what`` and ``advice``, when ``needed`` bytes exceed the free space at ``where``."""
    have = free_disk(where)
    if needed > have:
        raise CxrDeviceError(f"{what} needs about {size_text(needed)} of disk at {where} but {size_text(have)} "
                             f"are free there; {advice}")
