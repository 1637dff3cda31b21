"""The built-in demo, device-side steps: synthetic NIH-format data -> cohort -> EDA -> train
(a small CNN at 64 px, on the CPU, in seconds), plus a few synthetic DICOMs to try
``check-dicom`` and ``predict`` on. The ``demo`` command (in ``validation``) adds evaluation and
the locked bundle on top of :func:`run_demo`.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .cohort import Cohort, CohortSettings, build_cohort, write_cohort
from .eda import run_eda
from .synth import SynthSettings, generate

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
    dicoms: dict[str, Path]


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
    dicoms = write_demo_dicoms(out / "dicom", seed)
    return DemoResult(out / "data", metadata, cohort_dir, out / "eda", cohort, eda, training, dicoms)


def write_demo_dicoms(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Synthetic DICOMs for trying the QA and inference commands: two acceptable chest
    radiographs and two that the default rules must refuse."""
    import numpy as np

    from .synth import phantom
    from .synth_dicom import write_synthetic_dicom

    def image(positive: bool, ap: bool, k: int) -> np.ndarray:
        return phantom(512, positive, ap, np.random.default_rng([seed, 9999, k]))

    return {
        "pa_chest_opacity": write_synthetic_dicom(folder / "pa_chest_opacity.dcm", image(True, False, 1), seed),
        "ap_chest_clear": write_synthetic_dicom(folder / "ap_chest_clear.dcm", image(False, True, 2), seed,
                                                ViewPosition="AP"),
        "lateral_chest": write_synthetic_dicom(folder / "lateral_chest.dcm", image(False, False, 3), seed,
                                               ViewPosition="LL"),
        "ct_head": write_synthetic_dicom(folder / "ct_head.dcm", image(False, False, 4), seed, Modality="CT",
                                         BodyPartExamined="HEAD", SOPClassUID="1.2.840.10008.5.1.4.1.1.2"),
    }
