"""The built-in demo: synthetic NIH-format data through every step that exists so far.

Today that is synth -> cohort -> EDA -> train (a small CNN at 64 px, on the CPU, in seconds).
Evaluation, the locked bundle and the submission documents join the demo as they are built.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .cohort import Cohort, CohortSettings, build_cohort, write_cohort
from .eda import run_eda
from .synth import SynthSettings, generate

STEPS_AVAILABLE = ("synth", "cohort", "eda", "train")
STEPS_PENDING = ("evaluate", "bundle", "submission")
#: Small enough for a 2-core CPU in seconds; the phantoms' opacity is learnable at 64 px.
DEMO_TRAINING = {"model.arch": "small_cnn", "image_size": 64, "epochs": 3, "batch_size": 32, "lr": 1e-3,
                 "device": "cpu", "workers": 0}


@dataclass
class DemoResult:
    """Where the demo put things, and what it found."""

    data: Path
    metadata: Path
    cohort_dir: Path
    eda_dir: Path
    cohort: Cohort
    eda: dict
    training: object  # cxr_device.training.TrainResult


def run_demo(out_dir: str | Path, n_patients: int = 120, seed: int = 0, progress: bool = True) -> DemoResult:
    """Generate synthetic data in ``out_dir/data`` and run cohort and EDA into the run folder."""
    out = Path(out_dir)
    metadata = generate(out / "data", SynthSettings(n_patients=n_patients, seed=seed), progress=progress)
    settings = CohortSettings(metadata=str(metadata), images=(str(out / "data"),), seed=seed)
    cohort = build_cohort(settings)
    cohort_dir = write_cohort(cohort, out / "cohort")
    eda = run_eda(cohort_dir, out / "eda", pixel_sample=50, seed=seed, progress=progress)
    from .train_config import TrainConfig  # torch is imported only when the demo gets here
    from .training import train

    config = TrainConfig().with_overrides(**DEMO_TRAINING, seed=seed)
    shutil.rmtree(out / "model", ignore_errors=True)  # a demo re-run retrains on its (new) cohort
    training = train(cohort_dir, out, config, progress=progress)
    return DemoResult(out / "data", metadata, cohort_dir, out / "eda", cohort, eda, training)
