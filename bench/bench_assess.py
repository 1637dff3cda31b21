"""``assess`` on 624 pediatric images of 224 px, beside ``predict`` on the same files.

The sequestered set the pediatric device is assessed on (234 normal, 390 pneumonia, 224 px JPEG)
is not on this machine; 624 images of the same encoding are taken from the training folder of the
shared data (the first 234 NORMAL and 390 PNEUMONIA files, by name) into a class-folder layout of
links. Both paths score with the same bundle:

* ``assess``: read the class folders, score every image through the device runtime, metrics with
  DeLong and exact intervals and a 2,000-replicate patient bootstrap, figures, assessment.json;
* ``predict``: the same runtime over the same files (``DevicePipeline.run``), no metrics.

Target (issue #11): assess under a minute on 2 cores. The ratio assess / predict is the cost of
the assessment itself.

    python bench/bench_assess.py --bundle runs/pediatric_reference/bundle [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.pipeline import DevicePipeline
from validation.assessment import assess
from validation.assessment_inputs import from_folders

SHARED = Path(os.environ.get("CXR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def make_set(folder: Path, source: Path, normal: int = 234, pneumonia: int = 390) -> list[Path]:
    paths = []
    for name, n in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        (folder / name).mkdir(parents=True)
        for image in sorted((source / name).glob("*.jpeg"))[:n]:
            (folder / name / image.name).symlink_to(image.resolve())
            paths.append(folder / name / image.name)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("runs/pediatric_reference/bundle"))
    parser.add_argument("--source", type=Path, default=SHARED / "kermany" / "train")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    work = Path(tempfile.mkdtemp(prefix="bench_assess_"))
    try:
        paths = make_set(work / "set", args.source)
        DevicePipeline(bundle).run(paths[:8], allow_non_dicom=True)  # warm-up: imports, first kernels
        predict_s, assess_s = [], []
        for r in range(args.repeats):
            start = time.perf_counter()
            DevicePipeline(bundle).run(paths, allow_non_dicom=True)
            predict_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            document = assess(bundle, from_folders(work / "set"), work / f"out{r}", "bench", n_bootstrap=2000)
            assess_s.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(work)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); bundle {args.bundle} "
          f"({bundle.meta['architecture']['architecture']}, {bundle.preprocessing.image_size} px)")
    print(f"{len(paths)} images ({document['inputs']['n_negative']} normal, {document['inputs']['n_positive']} "
          f"pneumonia), median of {args.repeats}:")
    p, a = statistics.median(predict_s), statistics.median(assess_s)
    print(f"  predict path (DevicePipeline.run)          {p:6.1f} s  {len(paths) / p:6.1f} images/s")
    print(f"  assess (scoring + metrics + figures + json) {a:6.1f} s  {len(paths) / a:6.1f} images/s")
    print(f"  assess / predict                             {a / p:6.2f}x")


if __name__ == "__main__":
    main()
