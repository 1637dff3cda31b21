"""check-dicom throughput and pixel-decode speed per transfer syntax.

Builds a folder of N files (hard links, or symlinks across file systems, to the real DICOMs
in the shared data folder, round-robin), then times:

* ``check_paths`` header-only with W worker processes (what ``cxr-device check-dicom`` does);
* a naive loop - full ``pydicom.dcmread`` plus ``pixel_array`` - on a subset, in files/s;
* ``load_image`` (decode + VOI + scaling) per transfer syntax, in images/s.

Targets (issue #3): at least 3x the naive loop and 2,500 files/s with 2 workers on 2 cores.

    python bench/bench_check_dicom.py [--files 2100] [--workers 2] [--naive 140]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pydicom

from cxr_device.imageio import load_image
from cxr_device.runtime.header_check import collect_paths
from cxr_device.runtime.input_rules import load_rules
from validation.dicom_check import check_paths

DEFAULT = Path(os.environ.get("CXR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "dicom"


def link_copies(sources: list[Path], folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        source = sources[i % len(sources)]
        target = folder / f"{i:05d}_{source.name}"
        try:
            os.link(source, target)
        except OSError:
            target.symlink_to(source.resolve())
        paths.append(target)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicom", type=Path, default=DEFAULT)
    parser.add_argument("--files", type=int, default=2100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--naive", type=int, default=140, help="files in the naive loop (it is slow)")
    args = parser.parse_args()
    sources = sorted(args.dicom.glob("*.dcm"))
    if not sources:
        sys.exit(f"no DICOM files in {args.dicom} (set CXR_SHARED_DATA)")
    rules = load_rules()
    folder = Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    try:
        link_copies(sources, folder, args.files)
        paths = collect_paths([folder])
        check_paths(paths[:50], rules)  # warm the page cache and imports
        start = time.perf_counter()
        results = check_paths(paths, rules, workers=args.workers)
        ours = len(results) / (time.perf_counter() - start)
        start = time.perf_counter()
        check_paths(paths, rules, workers=1)
        ours_one = len(paths) / (time.perf_counter() - start)

        subset = paths[: args.naive]
        start = time.perf_counter()
        for path in subset:
            ds = pydicom.dcmread(path)
            ds.pixel_array  # noqa: B018 - the naive loop touches the pixels
        naive = len(subset) / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pydicom {pydicom.__version__}")
    print(f"header QA, {len(results)} files ({len(sources)} real DICOMs, round-robin):")
    print(f"  check-dicom, {args.workers} workers        {ours:8.0f} files/s")
    print(f"  check-dicom, 1 worker          {ours_one:8.0f} files/s")
    print(f"  naive dcmread + pixel_array    {naive:8.1f} files/s  ({len(subset)} files)")
    print(f"  speed-up over naive            {ours / naive:8.0f}x")
    print("pixel decode with load_image (decode, modality LUT, VOI, scaling):")
    for source in sources:
        syntax = pydicom.dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
        load_image(source)
        repeats, start = 5, time.perf_counter()
        for _ in range(repeats):
            image = load_image(source)
        rate = repeats / (time.perf_counter() - start)
        print(f"  {source.name:<46} {syntax.name:<44} {image.shape[0]}x{image.shape[1]}  {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
