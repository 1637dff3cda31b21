"""check-dicom header throughput against a fair baseline, and pixel-decode speed per transfer syntax.

Builds a folder of N files (hard links, or symlinks across file systems, to the real DICOMs in
the shared data folder, round-robin), then measures, side by side on those same files:

(a) the plain loop, one process: ``pydicom.dcmread(path, stop_before_pixels=True)`` plus eight
    attribute checks (Modality DX/CR, BodyPartExamined CHEST, ViewPosition PA/AP,
    PhotometricInterpretation MONOCHROME1/2, SamplesPerPixel 1, BitsStored 8-16,
    Rows and Columns 512-8192) - what anyone would write in a few lines;
(b) ``check_paths`` with 1 worker (what ``cxr-device check-dicom`` does: every rule, the Pixel
    Data and truncation checks, the report fields);
(c) ``check_paths`` with W workers (default 2);
(d) the plain loop over W processes, with the same pool and chunking as ``check_paths``.

Each round runs the four in a rotated order (round r starts with the r-th), so that noise from
other work on the machine falls on every side; the figures are medians over the rounds, and the
ratios b/a ("per worker") and c/d (W workers) are given both as ratios of the medians and as
medians of the per-round ratios. Target (check-dicom speed issue): b/a at least 1.5.

Then ``load_image`` (decode + VOI + scaling) per transfer syntax, in images/s.

    python bench/bench_check_dicom.py [--files 2100] [--workers 2] [--rounds 5] [--decode-repeats 5]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pydicom

from cxr_device.imageio import load_image
from cxr_device.runtime.header_check import PASS, collect_paths
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


def plain_check(path: Path | str) -> bool:
    """The baseline: header read with pydicom, eight checks, pass or not."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return (ds.get("Modality") in ("DX", "CR")
                and ds.get("BodyPartExamined") == "CHEST"
                and ds.get("ViewPosition") in ("PA", "AP")
                and ds.get("PhotometricInterpretation") in ("MONOCHROME1", "MONOCHROME2")
                and ds.get("SamplesPerPixel") == 1
                and 8 <= (ds.get("BitsStored") or 0) <= 16
                and 512 <= (ds.get("Rows") or 0) <= 8192
                and 512 <= (ds.get("Columns") or 0) <= 8192)
    except Exception:  # noqa: BLE001 - an unreadable file does not pass
        return False


def _plain_chunk(paths: list[str]) -> list[bool]:
    return [plain_check(p) for p in paths]


def plain_paths(paths: list[Path], workers: int = 1) -> list[bool]:
    """The plain loop, over ``workers`` processes with the pool and chunking of check_paths."""
    if workers <= 1:
        return [plain_check(p) for p in paths]
    size = max(1, min(256, len(paths) // (workers * 8)))
    chunks = [[str(p) for p in paths[i:i + size]] for i in range(0, len(paths), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [ok for done in pool.map(_plain_chunk, chunks) for ok in done]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicom", type=Path, default=DEFAULT)
    parser.add_argument("--files", type=int, default=2100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode-repeats", type=int, default=5, help="0: skip the decode table")
    args = parser.parse_args()
    sources = sorted(args.dicom.glob("*.dcm"))
    if not sources:
        sys.exit(f"no DICOM files in {args.dicom} (set CXR_SHARED_DATA)")
    rules = load_rules()
    w = args.workers
    folder = Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    try:
        link_copies(sources, folder, args.files)
        paths = collect_paths([folder])
        runs = {
            "a": ("(a) plain loop, 1 process", lambda: plain_paths(paths, 1)),
            "b": ("(b) check_paths, 1 worker", lambda: check_paths(paths, rules, workers=1)),
            "c": (f"(c) check_paths, {w} workers", lambda: check_paths(paths, rules, workers=w)),
            "d": (f"(d) plain loop, {w} processes", lambda: plain_paths(paths, w)),
        }
        plain_paths(paths[:100])  # warm the page cache and imports on both sides
        check_paths(paths[:100], rules)
        rates: dict[str, list[float]] = {key: [] for key in runs}
        outcome: dict[str, int] = {}
        keys = list(runs)
        for r in range(args.rounds):
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                start = time.perf_counter()
                out = runs[key][1]()
                rates[key].append(len(paths) / (time.perf_counter() - start))
                outcome[key] = sum(x is True or getattr(x, "status", None) == PASS for x in out)
    finally:
        shutil.rmtree(folder)

    median = {key: statistics.median(values) for key, values in rates.items()}
    print(f"machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"pydicom {pydicom.__version__}, {datetime.date.today().isoformat()}")
    print(f"header QA, {len(paths)} files ({len(sources)} real DICOMs, round-robin), {args.rounds} rounds, "
          "rotated order; files/s: median [each round]")
    for key, (label, _) in runs.items():
        each = " ".join(f"{v:,.0f}" for v in rates[key])
        print(f"  {label:<32} {median[key]:8,.0f}   [{each}]   pass: {outcome[key]}")
    for top, bottom, what in (("b", "a", "per worker: 1 worker vs the plain loop"),
                              ("c", "d", f"{w} workers vs the plain loop on {w} processes"),
                              ("c", "b", f"scaling of check_paths, 1 -> {w} workers"),
                              ("d", "a", f"scaling of the plain loop, 1 -> {w} processes")):
        per_round = [x / y for x, y in zip(rates[top], rates[bottom])]
        each = " ".join(f"{v:.2f}" for v in per_round)
        print(f"  {top} / {bottom}  {what:<46} {median[top] / median[bottom]:5.2f}x   "
              f"(per round: median {statistics.median(per_round):.2f}, [{each}])")

    if args.decode_repeats <= 0:
        return
    print("pixel decode with load_image (decode, modality LUT, VOI, scaling):")
    for source in sources:
        syntax = pydicom.dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
        load_image(source)
        repeats, start = args.decode_repeats, time.perf_counter()
        for _ in range(repeats):
            image = load_image(source)
        rate = repeats / (time.perf_counter() - start)
        print(f"  {source.name:<46} {syntax.name:<44} {image.shape[0]}x{image.shape[1]}  {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
