"""The demo's synthetic DICOMs: two acceptable chest radiographs and two the rules must refuse,
for trying ``check-dicom``, ``predict`` and the DICOM node (``serve``). (The demo's pipeline is
``cxr-device run`` with the built-in ``configs/demo.yaml``.)

The three radiographs are one study of one (synthetic) patient, the CT another study of the
same patient: the node answers each image into its own study and records the study's chosen
frontal image. Each file is a standard-valid instance of its IOD (``dciodvfy`` reports no
error): the radiographs are DX images, the CT is a CT image (a 12-bit axial slice in Hounsfield
units, so it is honest about being a CT: the rules refuse it for its modality, not for being
malformed). All four are phantoms, marked synthetic in PatientName, ImageComments and
SeriesDescription.
"""
from __future__ import annotations

from pathlib import Path


def write_demo_dicoms(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Synthetic DICOMs for trying the QA and inference commands: two acceptable chest
    radiographs and two that the default rules must refuse."""
    import numpy as np
    from pydicom.uid import generate_uid

    from .synth import phantom
    from .synth_dicom import CT_IMAGE, write_synthetic_dicom

    def image(positive: bool, ap: bool, k: int) -> np.ndarray:
        return phantom(512, positive, ap, np.random.default_rng([seed, 9999, k]))

    ct_slice = image(False, False, 4).astype(np.uint16) * 16  # 12 bits stored, HU = value - 1024
    chest = {"StudyInstanceUID": generate_uid(entropy_srcs=["cxr-device demo chest study", str(seed)])}
    return {
        "pa_chest_opacity": write_synthetic_dicom(folder / "pa_chest_opacity.dcm", image(True, False, 1), seed,
                                                  InstanceNumber=1, **chest),
        "ap_chest_clear": write_synthetic_dicom(folder / "ap_chest_clear.dcm", image(False, True, 2), seed,
                                                ViewPosition="AP", InstanceNumber=2, **chest),
        "lateral_chest": write_synthetic_dicom(folder / "lateral_chest.dcm", image(False, False, 3), seed,
                                               ViewPosition="LL", PatientOrientation=["P", "F"], InstanceNumber=3,
                                               **chest),
        "ct_head": write_synthetic_dicom(folder / "ct_head.dcm", ct_slice, seed, bits_stored=12,
                                         SOPClassUID=CT_IMAGE, BodyPartExamined="HEAD"),
    }
