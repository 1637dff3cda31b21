"""Find image files under one or more roots and attach them to metadata rows.

Works with the NIH download layout (``images_001/images/*.png`` ... ``images_012/``), flat
folders, and any nesting in between: every root is walked recursively. Rows are matched to
files by file stem, so ``00000001_000.png`` in the metadata also finds ``00000001_000.dcm``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import exclusions as ex
from .errors import DatasetError
from .hashing import sha256_listing

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


@dataclass
class ImageIndex:
    """Image files found under the roots, keyed by file stem."""

    by_stem: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    roots: dict[str, dict] = field(default_factory=dict)  # root -> {n_files, listing_sha256}


def index_images(roots: list[str | Path], suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> ImageIndex:
    """Walk every root (sorted, deterministic) and index image files by stem."""
    index = ImageIndex()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: image folder not found (given with --images)")
        listing: list[tuple[str, int]] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(suffixes):
                    continue
                full = os.path.join(dirpath, name)
                listing.append((os.path.relpath(full, root), os.stat(full).st_size))
                stem = name.rsplit(".", 1)[0]
                absolute = os.path.abspath(full)
                if stem in index.by_stem:
                    index.duplicates.setdefault(stem, [index.by_stem[stem]]).append(absolute)
                else:
                    index.by_stem[stem] = absolute
        index.roots[str(root)] = {"n_files": len(listing), "listing_sha256": sha256_listing(listing)}
    return index


def attach_paths(frame: pd.DataFrame, index: ImageIndex, log: ex.ExclusionLog) -> tuple[pd.DataFrame, dict]:
    """Fill ``path`` from the index; rows without a file are excluded, files without a row reported.

    Returns the kept rows and a report: ``n_rows_without_image``, ``n_images_without_row``,
    ``images_without_row`` (sorted paths) and ``duplicate_files`` (stem -> paths; the first,
    in sorted walk order, is used).
    """
    stems = frame["image_id"].str.rsplit(".", n=1).str[0]
    paths = stems.map(index.by_stem)
    missing = paths.isna()
    log.add(frame[missing], ex.NO_IMAGE_FILE, "no file named '" + stems[missing] + ".*' under the image roots")
    kept = frame[~missing].assign(path=paths[~missing])
    used = set(stems[~missing])
    orphans = sorted(p for s, p in index.by_stem.items() if s not in used)
    report = {
        "n_rows_without_image": int(missing.sum()),
        "n_images_without_row": len(orphans),
        "images_without_row": orphans,
        "duplicate_files": index.duplicates,
    }
    return kept, report
