"""Find image files under one or more roots and attach them to metadata rows.

Works with the NIH download layout (``images_001/images/*.png`` ... ``images_012/``), flat
folders, and any nesting in between: every root is walked recursively. Rows are matched to
files by file stem, so ``00000001_000.png`` in the metadata also finds ``00000001_000.dcm``.

An entry that cannot even be looked at - a broken or looping symbolic link - is never indexed
and never crashes the walk: it is listed as unreadable (``unreadable_files`` in the report), and
a metadata row that names it is excluded as invalid input (``unreadable_image_file``), not
silently treated as missing.
"""
from __future__ import annotations

import errno
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
    unreadable: dict[str, str] = field(default_factory=dict)  # absolute path -> why it cannot be read


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
                absolute = os.path.abspath(full)
                try:
                    size = os.stat(full).st_size
                except OSError as err:  # a broken or looping link (ENOENT, ELOOP), or no permission
                    index.unreadable[absolute] = _why_unreadable(full, err)
                    listing.append((os.path.relpath(full, root), -1))
                    continue
                listing.append((os.path.relpath(full, root), size))
                stem = name.rsplit(".", 1)[0]
                if stem in index.by_stem:
                    index.duplicates.setdefault(stem, [index.by_stem[stem]]).append(absolute)
                else:
                    index.by_stem[stem] = absolute
        index.roots[str(root)] = {"n_files": len(listing), "listing_sha256": sha256_listing(listing)}
    return index


def _why_unreadable(path: str, err: OSError) -> str:
    """``broken symbolic link to 'x.png' (No such file or directory)``, or the system's reason."""
    try:
        target = os.readlink(path)
    except OSError:  # not a link (or gone since): the stat error is the reason
        return f"cannot be read ({err.strerror or err})"
    kind = "looping" if err.errno == errno.ELOOP else "broken"
    return f"{kind} symbolic link to '{target}' ({err.strerror or err})"


def attach_paths(frame: pd.DataFrame, index: ImageIndex, log: ex.ExclusionLog) -> tuple[pd.DataFrame, dict]:
    """Fill ``path`` from the index; rows without a file are excluded, files without a row reported.

    Returns the kept rows and a report: ``n_rows_without_image``, ``n_images_without_row``,
    ``images_without_row`` (sorted paths), ``duplicate_files`` (stem -> paths; the first, in
    sorted walk order, is used) and ``unreadable_files`` (path -> why; see the module notes).
    A row whose only file is unreadable is excluded as ``unreadable_image_file`` (invalid input).
    """
    stems = frame["image_id"].str.rsplit(".", n=1).str[0]
    paths = stems.map(index.by_stem)
    missing = paths.isna()
    unreadable_by_stem: dict[str, str] = {}
    for path, why in sorted(index.unreadable.items()):
        unreadable_by_stem.setdefault(os.path.basename(path).rsplit(".", 1)[0], f"'{path}': {why}")
    broken = missing & stems.isin(list(unreadable_by_stem))
    log.add(frame[broken], ex.UNREADABLE_IMAGE_FILE, stems[broken].map(unreadable_by_stem))
    absent = missing & ~broken
    log.add(frame[absent], ex.NO_IMAGE_FILE, "no file named '" + stems[absent] + ".*' under the image roots")
    kept = frame[~missing].assign(path=paths[~missing])
    used = set(stems[~missing])
    orphans = sorted(p for s, p in index.by_stem.items() if s not in used)
    report = {
        "n_rows_without_image": int(missing.sum()),
        "n_images_without_row": len(orphans),
        "images_without_row": orphans,
        "duplicate_files": index.duplicates,
        "unreadable_files": dict(sorted(index.unreadable.items())),
    }
    return kept, report
