"""The DICOM node's latency (C-STORE received -> SR written) and throughput on the CPU, beside the
`predict` path on the same files.

Inputs: 1024 x 1024 DX DICOMs made from a real NIH image of the shared data folder (a synthetic
phantom when it is absent), each with its own SOP Instance UID (the node never answers an
instance twice). Device: a DenseNet-121 bundle at 224 px (random weights: speed does not depend
on them), as in bench_predict.py. Measured, per repeat:

* node latency: one image sent, the node idle again, N times; the node's own clock from the
  C-STORE handler (dataset received) to the SR written and the source moved to done/;
* node throughput: M images sent back to back from 2 associations, first send -> node idle;
* predict path: `DevicePipeline.run([file])` (the table `predict` prints) and
  `score_to_dicom([file])` (what `predict --dicom-out` does) on the same file, interleaved with
  the node's single images so that other work on the machine hits all three alike.

Other CPU-heavy work may share the machine: the script prints the load average and reports the
median over ``--repeats``.

    python bench/bench_node.py [--runs 30] [--burst 64] [--repeats 3] [--arch densenet121]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from cxr_device.models import ModelSpec, build_model
from cxr_device.preprocessing import Preprocessing
from cxr_device.runtime.bundle import load_bundle, write_bundle
from cxr_device.runtime.dicom_results import score_to_dicom
from cxr_device.runtime.input_rules import default_rules_path
from cxr_device.runtime.node import DicomNode
from cxr_device.runtime.pipeline import DevicePipeline
from cxr_device.synth import phantom
from cxr_device.synth_dicom import write_synthetic_dicom

SHARED = Path(os.environ.get("CXR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def source_pixels() -> tuple[np.ndarray, str]:
    pngs = sorted((SHARED / "nih" / "images_1024").glob("*.png"))
    if pngs:
        from PIL import Image

        return np.asarray(Image.open(pngs[0]).convert("L")), f"real NIH image {pngs[0].name}"
    return phantom(1024, True, False, np.random.default_rng(0)), "synthetic phantom (shared data absent)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ms(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def one_repeat(bundle, files: list[Path], runs: int, burst: int, work: Path) -> dict:
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

    def association():
        ae = AE(ae_title="BENCH")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        ae.add_requested_context(DigitalXRayImageStorageForPresentation)
        assoc = ae.associate("127.0.0.1", port, ae_title="CXR_DEVICE")
        assert assoc.is_established
        return assoc

    out = work / "node"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "predict-dicom-out", ignore_errors=True)
    node = DicomNode(bundle, out, port=0, host="127.0.0.1")
    port = node.start()
    pipeline = DevicePipeline(bundle)  # the predict path, kept in memory as the node keeps its own
    try:
        single, burst_files = files[:runs], files[runs:runs + burst]
        assoc = association()
        assoc.send_c_store(single[0])  # warm-up (first model call, first SR) of both paths
        node.wait_idle(120)
        pipeline.run([single[0]])
        score_to_dicom(pipeline, [single[0]], work / "predict-dicom-out")
        node.latencies.clear()
        round_trips, predict_times, dicom_out_times = [], [], []
        for path in single[1:]:  # interleaved, so that other work on the machine hits all three alike
            start = time.perf_counter()
            assert assoc.send_c_store(path).Status == 0
            round_trips.append(time.perf_counter() - start)
            assert node.wait_idle(120)
            start = time.perf_counter()
            pipeline.run([path])
            predict_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            score_to_dicom(pipeline, [path], work / "predict-dicom-out")
            dicom_out_times.append(time.perf_counter() - start)
        assoc.release()
        latencies = list(node.latencies)
        node.latencies.clear()
        start = time.perf_counter()

        def sender(part: list[Path]) -> None:
            a = association()
            for path in part:
                a.send_c_store(path)
            a.release()

        threads = [threading.Thread(target=sender, args=(burst_files[k::2],)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert node.wait_idle(600)
        rate = len(burst_files) / (time.perf_counter() - start)
        burst_latencies = list(node.latencies)
    finally:
        node.stop()
    assert node.counts["accepted"] == runs + burst and node.counts["duplicates"] == 0
    return {"node": ms(latencies), "round_trip": ms(round_trips), "burst": ms(burst_latencies), "rate": rate,
            "predict": ms(predict_times), "dicom_out": ms(dicom_out_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="single images for the latency (plus one warm-up)")
    parser.add_argument("--burst", type=int, default=64, help="images for the throughput")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="bench_node_"))
    pixels, what = source_pixels()
    files = [write_synthetic_dicom(work / "in" / f"cxr{i:03d}.dcm", pixels, seed=i)
             for i in range(args.runs + args.burst)]
    (work / "cohort.csv").write_text("image_id\n")
    torch.manual_seed(0)
    write_bundle(work / "bundle", build_model(ModelSpec(arch=args.arch, weights="none")),
                 Preprocessing(image_size=args.image_size), {"value": 0.5, "rule": "max_f1"}, default_rules_path(),
                 work / "cohort.csv")
    bundle = load_bundle(work / "bundle")
    print(f"machine: {platform.machine()} {cpu_model()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at start, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"{args.arch} at {args.image_size} px; input {what}, 1024 x 1024, 8-bit DX; {args.runs - 1} single images "
          f"and {args.burst} in a burst per repeat; {args.repeats} repeats")
    repeats = []
    for k in range(args.repeats):
        result = one_repeat(bundle, files, args.runs, args.burst, work)
        repeats.append(result)
        print(f"  repeat {k + 1}: node p50/p95 {result['node'][0]:.1f}/{result['node'][1]:.1f} ms, predict "
              f"{result['predict'][0]:.1f}/{result['predict'][1]:.1f} ms, predict --dicom-out "
              f"{result['dicom_out'][0]:.1f}/{result['dicom_out'][1]:.1f} ms, C-STORE round trip "
              f"{result['round_trip'][0]:.1f} ms, burst {result['rate']:.1f} files/s "
              f"(latency in the burst p50 {result['burst'][0]:.0f} ms)", flush=True)

    def median(key: str, index: int | None = None) -> float:
        return statistics.median(r[key][index] if index is not None else r[key] for r in repeats)

    print(f"median of {args.repeats} repeats:")
    print(f"  node: C-STORE received -> SR written  p50 {median('node', 0):.1f} ms  p95 {median('node', 1):.1f} ms")
    print(f"  node: C-STORE round trip (stored, acknowledged)  p50 {median('round_trip', 0):.1f} ms")
    print(f"  node: throughput, 2 associations  {median('rate'):.1f} files/s")
    print(f"  predict path (rules + decode + model)  p50 {median('predict', 0):.1f} ms  "
          f"p95 {median('predict', 1):.1f} ms")
    print(f"  predict --dicom-out path (+ SR written)  p50 {median('dicom_out', 0):.1f} ms  "
          f"p95 {median('dicom_out', 1):.1f} ms")
    print(f"  ratio node / predict at p50: {median('node', 0) / median('predict', 0):.2f}; "
          f"node / predict --dicom-out: {median('node', 0) / median('dicom_out', 0):.2f}")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
