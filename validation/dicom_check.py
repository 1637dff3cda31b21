"""check-dicom over many files: the device's header check in parallel, and the QA summary.

The per-file check itself is the device's (:mod:`cxr_device.runtime.header_check`), so the QA
gate and the device refuse exactly the same files. Results are sorted by path whatever the
number of worker processes.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from tqdm import tqdm

from cxr_device.dicom_pixels import DEFAULT_MAX_PIXELS
from cxr_device.runtime.header_check import (
    FAIL,
    PASS,
    UNREADABLE,
    FileResult,
    check_file,
)
from cxr_device.runtime.input_rules import RuleSet


def check_paths(paths: list[Path], rules: RuleSet, workers: int = 1, decode: bool = False, show_phi: bool = False,
                progress: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[FileResult]:
    """Check every path, in parallel over ``workers`` processes; results sorted by path.

    Each worker process receives the rules once (pool initializer) and then chunks of paths as
    plain strings, and sends back one list of results per chunk: per file, only the check itself
    runs in a worker."""
    settings = (rules, decode, show_phi, max_pixels)
    bar = partial(tqdm, total=len(paths), desc="check-dicom", unit="file", disable=not progress)
    if workers <= 1 or len(paths) < 2 * workers:
        check = partial(check_file, rules=rules, decode=decode, show_phi=show_phi, max_pixels=max_pixels)
        results = list(bar(map(check, paths)))
    else:
        size = max(1, min(256, len(paths) // (workers * 8)))
        chunks = [[str(p) for p in paths[i:i + size]] for i in range(0, len(paths), size)]
        results = []
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=settings) as pool, \
                bar() as progress_bar:
            for done in pool.map(_check_chunk, chunks):
                results.extend(done)
                progress_bar.update(len(done))
    return sorted(results, key=lambda r: r.path)


#: The check's settings in a worker process (set once, by the pool's initializer).
_SETTINGS: tuple = ()


def _init_worker(rules: RuleSet, decode: bool, show_phi: bool, max_pixels: int) -> None:
    global _SETTINGS
    _SETTINGS = (rules, decode, show_phi, max_pixels)


def _check_chunk(paths: list[str]) -> list[FileResult]:
    rules, decode, show_phi, max_pixels = _SETTINGS
    return [check_file(path, rules, decode, show_phi, max_pixels) for path in paths]


def summarise(results: list[FileResult]) -> dict:
    """Counts by status, warnings, and the findings most often seen (by rule)."""
    status = Counter(r.status for r in results)
    by_rule = Counter(f.rule for r in results for f in r.findings)
    return {
        "files": len(results),
        PASS: status.get(PASS, 0),
        FAIL: status.get(FAIL, 0),
        UNREADABLE: status.get(UNREADABLE, 0),
        "warnings": sum(len(r.warnings) for r in results),
        "findings_by_rule": dict(sorted(by_rule.items())),
    }
