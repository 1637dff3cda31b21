"""The demo's synthetic DICOMs: two acceptable chest radiographs and two the rules must refuse,
for trying ``check-dicom`` and ``predict``. (The demo's pipeline is ``cxr-device run`` with the
built-in ``configs/demo.yaml``.)"""
from __future__ import annotations

from pathlib import Path


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
