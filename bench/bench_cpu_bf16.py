"""Training steps on the CPU: 32-bit against channels-last and bf16 autocast (``train.cpu_bf16``).

Images/s of full training steps (forward, backward, AdamW) of one architecture at batch 32 on
synthetic 1-channel images, timed by ``train_throughput.steps_per_second`` (the step of
``cxr_device.training``): the baseline is 32-bit NCHW (``cpu_bf16: false``, the default), timed
in the same run as channels-last alone and as bf16 autocast with channels-last (``cpu_bf16: true``).
The configurations are interleaved round by round, so a change of load on the machine hits them
alike; the result is each one's median images/s as a ratio of the
baseline's. bf16 is fast only where the CPU has AVX512-BF16 or AMX (the output says which).

    python bench/bench_cpu_bf16.py [--arch efficientnet_lite0] [--rounds 3] [--steps 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
from itertools import repeat

import numpy as np
import torch
from train_throughput import steps_per_second

from cxr_device.models import ModelSpec, build_model

CONFIGS = {"32-bit NCHW (baseline)": (False, False), "32-bit channels-last": (True, False),
           "bf16 + channels-last (cpu_bf16)": (True, True)}


def step_rate(arch: str, size: int, batch: int, steps: int, channels_last: bool, bf16: bool) -> float:
    """Images/s of ``steps`` training steps of a fresh ``arch`` on one synthetic batch."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch, dropout=0.2))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    batches = repeat((torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch,)).float()))
    return steps_per_second(model, batches, torch.device("cpu"), steps, torch.bfloat16 if bf16 else None,
                            channels_last)


def cpu_flags() -> str:
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return "unknown"
    found = sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f")})
    return ", ".join(found) or "none of avx512f, avx512_bf16, amx_bf16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU {platform.processor() or platform.machine()}, {args.threads} threads, flags: {cpu_flags()}; "
          f"torch {torch.__version__}; {args.arch} at {args.image_size} px, batch {args.batch_size}, "
          f"{args.steps} timed steps x {args.rounds} rounds")
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, (channels_last, bf16) in CONFIGS.items():
            rates[name].append(step_rate(args.arch, args.image_size, args.batch_size, args.steps, channels_last, bf16))
    base = float(np.median(rates["32-bit NCHW (baseline)"]))
    print(f"{'configuration':<34} {'images/s (median)':>18} {'x baseline':>11}")
    for name, values in rates.items():
        median = float(np.median(values))
        print(f"{name:<34} {median:18.1f} {median / base:11.2f}")


if __name__ == "__main__":
    main()
