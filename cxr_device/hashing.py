"""sha256 of files and of folder listings, for provenance records."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_listing(entries: Iterable[tuple[str, int]]) -> str:
    """Hex sha256 of a sorted (relative path, size) listing: cheap identity of an image folder."""
    digest = hashlib.sha256()
    for rel, size in sorted(entries):
        digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()
