"""Single-image latency from DICOM file to decision, and batch throughput, on the CPU.

The input is a 1024 x 1024 DICOM made from a real NIH image of the shared data folder. The
device path is `predict_files` with a DenseNet-121 bundle at 224 px: header rules, decode,
the shared preprocessing, inference mode, threshold. The naive baseline, timed in the same
run: a fresh full `pydicom.dcmread`, `pixel_array`, PIL resize, and a model call without
inference mode. Target (issue #5): p50 at most 100 ms on a 2-core machine.

    python bench/bench_predict.py [--runs 50] [--arch densenet121] [--image-size 224] [--batch 64]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import pydicom
import torch
from nih_dicom import nih_dicom
from PIL import Image

from cxr_device.models import ModelSpec, build_model
from cxr_device.preprocessing import Preprocessing
from cxr_device.runtime.bundle import load_bundle, write_bundle
from cxr_device.runtime.input_rules import default_rules_path
from cxr_device.runtime.pipeline import DevicePipeline


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):6.1f} ms   p95 {np.percentile(ms, 95):6.1f} ms   mean {ms.mean():6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64, help="files for the batch-throughput measurement")
    args = parser.parse_args()
    work, dicom, cohort = nih_dicom("bench_predict_")
    torch.manual_seed(0)
    pre = Preprocessing(image_size=args.image_size)
    model = build_model(ModelSpec(arch=args.arch))
    write_bundle(work / "bundle", model, pre, {"value": 0.5, "rule": "max_f1"}, default_rules_path(), cohort)
    bundle = load_bundle(work / "bundle")
    device = DevicePipeline(bundle)  # loaded once, as a service would

    naive_model = bundle.model

    def naive() -> float:
        ds = pydicom.dcmread(dicom)
        pixels = ds.pixel_array.astype(np.float32) / 255.0
        resized = np.asarray(Image.fromarray(pixels).resize((args.image_size, args.image_size)))
        x = torch.from_numpy((resized - pre.mean) / pre.std)[None, None].float()
        return torch.sigmoid(naive_model(x)).item()

    device.run([dicom])  # warm-up
    naive()
    device_times, naive_times = [], []
    for _ in range(args.runs):  # interleaved, so drift of the machine hits both alike
        start = time.perf_counter()
        [result] = device.run([dicom])
        device_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        naive()
        naive_times.append(time.perf_counter() - start)
    assert result.status == "accepted"

    copies = [dicom] * args.batch
    start = time.perf_counter()
    results = device.run(copies, batch_size=16)
    batch_rate = len(results) / (time.perf_counter() - start)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"{args.arch} at {args.image_size} px, 1024 x 1024 DICOM input, {args.runs} runs each (CPU)")
    print(f"  device path (rules + decode + preprocessing + inference mode)   {percentiles(device_times)}")
    print(f"  naive (full dcmread, PIL resize, model call with autograd)      {percentiles(naive_times)}")
    print(f"  speed-up at p50: {statistics.median(naive_times) / statistics.median(device_times):.2f}x")
    print(f"  batch throughput: {batch_rate:.1f} files/s ({args.batch} files, batches of 16)")


if __name__ == "__main__":
    main()
