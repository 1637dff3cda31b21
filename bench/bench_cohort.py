"""Time cohort building on the full NIH metadata (112,120 rows).

Prints the median of several in-process runs for each stage - read + validate, the whole
build (filters and patient split included), and writing cohort.csv/summary.json - plus
the end-to-end CLI command with interpreter start-up. Target: build under 2 s on 2 cores.

    python bench/bench_cohort.py [--metadata PATH] [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cxr_device.cohort import CohortSettings, build_cohort, write_cohort
from cxr_device.filters import Filters
from cxr_device.nih_metadata import read_nih_metadata

DEFAULT = Path(os.environ.get("CXR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: imports, page cache
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metadata", type=Path, default=DEFAULT / "nih" / "Data_Entry_2017_v2020.csv.gz")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.metadata.is_file():
        sys.exit(f"metadata not found: {args.metadata} (set CXR_SHARED_DATA or pass --metadata)")

    plain = CohortSettings(metadata=str(args.metadata), metadata_only=True)
    filtered = CohortSettings(metadata=str(args.metadata), metadata_only=True, balance_train=3.0,
                              filters=Filters(min_age=1, max_age=95, views=("PA", "AP")))
    cohort = build_cohort(plain)
    out = Path(tempfile.mkdtemp())
    rows = [
        ("read + validate metadata", timed(lambda: read_nih_metadata(args.metadata), args.repeats)),
        ("build cohort (read, validate, split)", timed(lambda: build_cohort(plain), args.repeats)),
        ("build cohort with filters + --balance-train", timed(lambda: build_cohort(filtered), args.repeats)),
        ("write cohort.csv + summary.json + exclusions.csv", timed(lambda: write_cohort(cohort, out), args.repeats)),
    ]
    cli = [sys.executable, "-m", "cxr_device", "cohort", "--metadata", str(args.metadata), "--metadata-only",
           "--out", str(out / "cli")]
    rows.append(("CLI end to end (python start-up included)",
                 timed(lambda: subprocess.run(cli, check=True, capture_output=True), max(1, args.repeats // 2))))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"metadata: {args.metadata.name}, {cohort.summary['n_images']:,} rows, "
          f"{cohort.summary['n_patients']:,} patients; median of {args.repeats} runs")
    for name, seconds in rows:
        print(f"  {name:<50} {seconds:6.3f} s")


if __name__ == "__main__":
    main()
