"""What test-time views and ensembles cost per image, against the single-view device, on the CPU.

The input is a 1024 x 1024 DICOM made from a real NIH image of the shared data folder. Each
configuration is a locked bundle of the same architecture (EfficientNet-Lite0 at 224 px by
default) scored through the device path (`DevicePipeline.run`: rules, decode, preprocessing, the
views of every member, the mean of the logits, calibration, threshold). The baseline is the
single-view, single-model bundle, timed interleaved in the same run; the result is each
configuration's p50 as a ratio of the baseline's.

    python bench/bench_views.py [--runs 30] [--arch efficientnet_lite0] [--members 3] [--also-size 288]

``--also-size N`` adds one model and the ensemble of the same architecture at an input of N px
(centre view), so that a larger input and an ensemble are timed against the same baseline in the
same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from nih_dicom import nih_dicom

from cxr_device.models import ModelSpec, build_model
from cxr_device.preprocessing import VIEW_SETS, Preprocessing
from cxr_device.runtime.bundle import load_bundle, write_bundle
from cxr_device.runtime.input_rules import default_rules_path
from cxr_device.runtime.pipeline import DevicePipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--members", type=int, default=3, help="models of the ensemble configuration")
    parser.add_argument("--also-size", type=int, default=None, help="also time one model and the ensemble at this input size")
    args = parser.parse_args()
    work, dicom, cohort = nih_dicom("bench_views_")
    pre = Preprocessing(image_size=args.image_size)
    models = []
    for seed in range(args.members):
        torch.manual_seed(seed)
        models.append(build_model(ModelSpec(arch=args.arch)))
    threshold = {"value": 0.5, "rule": "max_f1"}
    configurations = {  # name -> (models, views, preprocessing)
        "1 model, centre view (baseline)": (models[0], ("center",), pre),
        "1 model, five crops": (models[0], VIEW_SETS["five_crop"], pre),
        f"{args.members} models, centre view": (models, ("center",), pre),
        f"{args.members} models, five crops": (models, VIEW_SETS["five_crop"], pre),
    }
    if args.also_size:
        larger = Preprocessing(image_size=args.also_size)
        configurations[f"1 model at {args.also_size} px, centre view"] = (models[0], ("center",), larger)
        configurations[f"{args.members} models at {args.also_size} px, centre view"] = (models, ("center",), larger)
    devices = {}
    for i, (name, (model, views, config_pre)) in enumerate(configurations.items()):
        folder = write_bundle(work / f"bundle{i}", model, config_pre, threshold, default_rules_path(), cohort,
                              views=views)
        devices[name] = DevicePipeline(load_bundle(folder))  # loaded once, as a service would
        devices[name].run([dicom])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in devices}
    for _ in range(args.runs):  # interleaved, so drift of the machine hits every configuration alike
        for name, device in devices.items():
            start = time.perf_counter()
            [result] = device.run([dicom])
            times[name].append(time.perf_counter() - start)
            assert result.status == "accepted", result.reason

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"{args.arch} at {args.image_size} px, 1024 x 1024 DICOM input, {args.runs} runs each, interleaved (CPU)")
    base = float(np.median(next(iter(times.values()))))
    for name, samples in times.items():
        ms = np.array(samples) * 1000
        print(f"  {name:<34} p50 {np.percentile(ms, 50):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms   "
              f"x{np.median(samples) / base:.2f} of the baseline")


if __name__ == "__main__":
    main()
