"""Training throughput per architecture: model-bound ceiling vs cached vs decode-every-step.

For each architecture, images/s of full training steps (forward, backward, optimiser) fed by:

  (a) synthetic tensors already on the device  - the model-bound ceiling;
  (b) the decoded-pixel cache + augmentation through a DataLoader - what `cxr-device train` does;
  (c) PNG decoding + resizing on every step through a DataLoader - the naive pipeline.

Plus the data pipelines alone (no model): images/s the cache and the decoder can deliver.
Images: the 1024 x 1024 NIH PNGs of the shared data folder (16 files, cycled). Target on a
GPU: (b) >= 0.9 (a); DenseNet-121 at 224 with AMP >= 3,000 images/s on an H100-class card.

    python bench/train_throughput.py [--archs densenet121,resnet18] [--image-size 224]
        [--batch-size 32] [--steps 5] [--workers 2] [--device auto] [--no-amp]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from itertools import cycle, islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from cxr_device.cache import open_cache
from cxr_device.data import Augmentation, CachedImages, DecodedImages
from cxr_device.models import ModelSpec, build_model
from cxr_device.preprocessing import Preprocessing
from cxr_device.training import resolve_device

SHARED = Path(os.environ.get("CXR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def steps_per_second(model, batches, device, steps: int, autocast_dtype: torch.dtype | None = None,
                     channels_last: bool | None = None) -> float:
    """Images/s over ``steps`` training steps (after one warm-up step): AdamW, binary cross-entropy
    on the 32-bit logit, the forward pass under ``autocast_dtype`` (None: 32-bit), the input in
    channels-last memory when ``channels_last`` (default: on CUDA), as ``cxr_device.training`` does."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else nullcontext
    seen, start = 0, None
    for i, (images, labels) in enumerate(islice(batches, steps + 1)):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            loss = loss_fn(model(images).float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def loader_rate(loader, batches: int) -> float:
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for images, _ in islice(it, batches):
        seen += len(images)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="densenet121,vgg16,resnet18,resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    sources = sorted((SHARED / "nih" / "images_1024").glob("*.png"))
    if not sources:
        sys.exit(f"no PNGs in {SHARED / 'nih' / 'images_1024'} (set CXR_SHARED_DATA)")
    device = resolve_device(args.device)
    pre = Preprocessing(image_size=args.image_size)
    augmentation = Augmentation()
    n = args.batch_size * (args.steps + 2)
    paths = [str(p) for p in islice(cycle(sources), n)]
    labels = np.arange(n) % 2
    frame = pd.DataFrame({"image_id": [f"{i:05d}" for i in range(len(sources))], "path": [str(p) for p in sources]})
    cache = open_cache(frame, pre, Path(tempfile.mkdtemp()) / "cache", workers=args.workers)
    rows = np.arange(n) % len(sources)
    cached = CachedImages(cache.pixels, rows, labels, pre, augmentation)
    decoded = DecodedImages(paths, labels, pre, augmentation)
    loader = lambda ds: DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers,  # noqa: E731
                                   pin_memory=device.type == "cuda", persistent_workers=False)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"device: {name}; torch {torch.__version__}; {platform.machine()}; image {args.image_size} px; "
          f"batch {args.batch_size}; {args.steps} timed steps; {args.workers} loader workers; "
          f"AMP {'bf16' if args.amp and device.type == 'cuda' else 'off'}")
    print(f"data only: cache {loader_rate(loader(cached), args.steps):8.1f} images/s   "
          f"decode 1024 px PNG {loader_rate(loader(decoded), args.steps):8.1f} images/s")
    print(f"{'arch':<12} {'(a) synthetic':>14} {'(b) cache':>12} {'(c) decode':>12} {'b/a':>6}")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(ModelSpec(arch=arch)).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        synthetic = cycle([(torch.randn(args.batch_size, 1, args.image_size, args.image_size, device=device),
                            torch.randint(0, 2, (args.batch_size,), device=device).float())])
        dtype = torch.bfloat16 if args.amp and device.type == "cuda" else None
        a = steps_per_second(model, synthetic, device, args.steps, dtype)
        b = steps_per_second(model, iter(loader(cached)), device, args.steps, dtype)
        c = steps_per_second(model, iter(loader(decoded)), device, args.steps, dtype)
        print(f"{arch:<12} {a:14.1f} {b:12.1f} {c:12.1f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
