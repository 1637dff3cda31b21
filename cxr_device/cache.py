"""Decoded-pixel cache: every image decoded and resized once, to uint8, in a memory-mapped array.

Decoding a 1024 x 1024 PNG costs far more than a training step on a GPU; the cache pays it
once. Layout of one cache (a folder under the cache root)::

    pixels.u8     raw uint8 array, shape (N, S, S), S = Preprocessing.stored_size
    index.csv     image_id, path, size, mtime_ns, row, ok, reason
    meta.json     key, identity digest, preprocessing, shape (written last: its presence
                  means the cache is complete)

The folder name is a key over the preprocessing parameters and the image paths; inside,
``meta.json`` keeps a digest of every file's size and modification time. A changed file makes
the cache *stale* and it is rebuilt. Images that fail to decode get an all-zero row,
``ok = False`` and the reason; callers leave them out and list them
(:meth:`PixelCache.left_out`: image id, split, reason).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import CxrDeviceError
from .imageio import load_image
from .preprocessing import Preprocessing, to_stored
from .provenance import producer
from .resources import require_disk, require_memory

PIXELS, INDEX, META = "pixels.u8", "index.csv", "meta.json"
CACHE_FILES = (PIXELS, INDEX, META)
#: Columns of every list of images left out because they could not be decoded.
LEFT_OUT_COLUMNS = ["image_id", "split", "reason"]
HIT, BUILT, STALE = "hit", "built", "rebuilt (stale)"


@dataclass
class PixelCache:
    """An opened cache: the memory-mapped pixels and the index (one row per image)."""

    folder: Path
    pixels: np.memmap
    index: pd.DataFrame
    status: str  # hit, built or rebuilt (stale)

    def rows(self, image_ids: pd.Series) -> np.ndarray:
        """Cache row of each image id (all must be in the cache)."""
        return image_ids.map(pd.Series(self.index["row"].to_numpy(), index=self.index["image_id"])).to_numpy(int)

    @property
    def failed(self) -> pd.DataFrame:
        """Images that could not be decoded, with the reason."""
        return self.index[~self.index["ok"]]

    def left_out(self, frame: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
        """The images of ``frame`` in ``splits`` that could not be decoded, which every caller
        leaves out: ``image_id, split, reason``, in the order of ``splits``, then by image id."""
        reasons = self.failed.set_index("image_id")["reason"]
        parts = [frame.loc[(frame["split"] == split) & frame["image_id"].isin(reasons.index), ["image_id", "split"]]
                 .sort_values("image_id", kind="stable") for split in splits]
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LEFT_OUT_COLUMNS[:2])
        return rows.assign(reason=rows["image_id"].map(reasons).astype(str))[LEFT_OUT_COLUMNS]


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    stats = [os.stat(p) if os.path.exists(p) else None for p in frame["path"]]
    return frame.assign(size=[s.st_size if s else -1 for s in stats],
                        mtime_ns=[s.st_mtime_ns if s else -1 for s in stats])


def _digest(parts: list[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\n")
    return digest.hexdigest()


def open_cache(frame: pd.DataFrame, pre: Preprocessing, root: str | Path, workers: int = 1,
               progress: bool = False) -> PixelCache:
    """Open the cache of ``frame`` (needs ``image_id`` and ``path``), building it if missing or stale."""
    if frame.empty:
        raise CxrDeviceError("no images to cache")
    frame = _identity(frame[["image_id", "path"]].sort_values("image_id").reset_index(drop=True))
    key = _digest([json.dumps(pre.as_dict(), sort_keys=True)] + list(frame["path"]))
    identity = _digest([f"{p}\t{s}\t{m}" for p, s, m in zip(frame["path"], frame["size"], frame["mtime_ns"])])
    folder = Path(root) / f"{pre.stored_size}px-{key[:16]}"
    meta_path = folder / META
    status = BUILT
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("identity") == identity:
            return _open(folder, meta, HIT)
        status = STALE
    _build(folder, frame, pre, key, identity, workers, progress)
    return _open(folder, json.loads(meta_path.read_text()), status)


def _open(folder: Path, meta: dict, status: str) -> PixelCache:
    index = pd.read_csv(folder / INDEX, dtype={"image_id": str, "path": str, "reason": str}, keep_default_na=False)
    index["ok"] = index["ok"].astype(bool)
    pixels = np.memmap(folder / PIXELS, dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    return PixelCache(folder, pixels, index, status)


def _clear(folder: Path) -> None:
    """Make ``folder`` an empty cache folder: remove a stale cache's own three files, refuse a
    folder that holds anything else (nothing a user put there is ever deleted)."""
    if not folder.exists():
        folder.mkdir(parents=True)
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in CACHE_FILES)
    if foreign or not folder.is_dir():
        raise CxrDeviceError(f"{folder}: a stale decoded-pixel cache must be rebuilt here, but the folder holds other "
                             f"files ({', '.join(foreign[:5]) or 'it is not a folder'}); nothing was deleted - move "
                             "them, or give another --cache-dir")
    for name in (META, INDEX, PIXELS):  # meta.json first: its presence means "complete"
        (folder / name).unlink(missing_ok=True)


def _build(folder: Path, frame: pd.DataFrame, pre: Preprocessing, key: str, identity: str, workers: int,
           progress: bool) -> None:
    _clear(folder)
    size = pre.stored_size
    shape = (len(frame), size, size)
    _check_room(folder, shape, pre, workers)
    np.memmap(folder / PIXELS, dtype=np.uint8, mode="w+", shape=shape).flush()
    chunks = [list(range(i, min(i + 64, len(frame)))) for i in range(0, len(frame), 64)]
    job = [(folder / PIXELS, shape, pre, [(i, frame["path"][i]) for i in chunk]) for chunk in chunks]
    reasons: dict[int, str] = {}
    bar = tqdm(total=len(frame), desc="cache", unit="img", disable=not progress)
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done, failed in pool.map(_decode_chunk, job):
                reasons.update(failed)
                bar.update(done)
    else:
        for args in job:
            done, failed = _decode_chunk(args)
            reasons.update(failed)
            bar.update(done)
    bar.close()
    index = frame.assign(row=np.arange(len(frame)), ok=[i not in reasons for i in range(len(frame))],
                         reason=[reasons.get(i, "") for i in range(len(frame))])
    index.to_csv(folder / INDEX, index=False, lineterminator="\n")
    meta = {"key": key, "identity": identity, "preprocessing": pre.as_dict(), "shape": list(shape),
            "n_failed": len(reasons), "produced_by": producer("cache")}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")


def _check_room(folder: Path, shape: tuple[int, int, int], pre: Preprocessing, workers: int) -> None:
    """Refuse a cache the disk cannot hold (a memory-mapped write into a full disk kills the
    process) or decoding processes the memory cannot hold (each resizes in float32)."""
    n, size, _ = shape
    what = f"the decoded-pixel cache ({n:,} images of {size} x {size} px, from image_size {pre.image_size})"
    require_disk(n * size * size, folder, what, "lower train.image_size (--image-size), or give train.cache_dir "
                 "(--cache-dir) on a disk with more room")
    require_memory(max(workers, 1) * size * size * 9, f"decoding {what} in {max(workers, 1)} process(es)",
                   "lower train.workers (--workers) or train.image_size (--image-size)")


def _decode_chunk(args) -> tuple[int, dict[int, str]]:
    """Worker: decode a chunk of images into their rows of the memory map."""
    path, shape, pre, items = args
    pixels = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
    failed = {}
    for row, image_path in items:
        try:
            pixels[row] = to_stored(load_image(image_path), pre)
        except CxrDeviceError as err:
            failed[row] = str(err)
    pixels.flush()
    return len(items), failed
