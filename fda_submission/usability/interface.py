"""The device's user interface as its users meet it, produced at render time - never typed.

* :func:`result_examples`: two synthetic DICOMs (no patient data) - a frontal chest phantom
  with an opacity that the locked input rules accept, and a lateral view they refuse - are run
  through the run's locked bundle exactly as the node runs an image; the SR each gets is shown as
  a viewer lists it, by DCMTK's ``dsrdump`` when it is installed, else by the product's own text
  rendering (:mod:`.sr_text`). The accepted image's Grad-CAM Secondary Capture is built too, and
  its series description, comments and burned-in banner text are read from it.
* :func:`admin_commands`: ``cxr-device serve --help``, ``status --help`` and ``verify --help``,
  from the command's own argument parsers (at a fixed width, so the text is the same on every
  machine).

The SR's content and instance dates are the moment it was built; so that the same run renders the
same document, they are set to the synthetic image's own fixed date before the SR is shown.
"""
from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from cxr_device.errors import CxrDeviceError

#: The width argparse wraps the help texts to (the same on every machine).
HELP_WIDTH = 100
DSRDUMP_OPTIONS = ("+Pl",)  # print long values completely, as a viewer shows a comment
ADMIN_COMMANDS = ("serve", "status", "verify")


def _dsrdump() -> tuple[str, str] | None:
    """(path, version line) of DCMTK's dsrdump, or None when it is not installed."""
    path = shutil.which("dsrdump")
    if path is None:
        return None
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = next((line.strip().strip("$").strip() for line in version.splitlines() if line.strip()), "dsrdump")
    return path, first.split(":", 1)[-1].strip()  # "$dcmtk: dsrdump v3.6.7 2022-04-22 $" -> "dsrdump v3.6.7 ..."


def render_sr(path: Path) -> dict:
    """``{"renderer", "text"}``: the SR file as dsrdump prints it, or the product's rendering."""
    from pydicom import dcmread

    from .sr_text import sr_text

    found = _dsrdump()
    if found is not None:
        try:
            done = subprocess.run([found[0], *DSRDUMP_OPTIONS, str(path)], capture_output=True, text=True,
                                  timeout=60, check=False)
            if done.returncode == 0 and done.stdout.strip():
                return {"renderer": f"DCMTK {found[1]}", "options": " ".join(DSRDUMP_OPTIONS),
                        "text": done.stdout.rstrip("\n") + "\n"}
        except (OSError, subprocess.SubprocessError):
            pass
    return {"renderer": "the product's own text rendering of the SR content tree (DCMTK dsrdump is not installed)",
            "options": "", "text": sr_text(dcmread(path))}


def _age_inside(rules) -> str | None:
    """A PatientAge the locked age rule accepts (the middle of its range), or None without one."""
    rule = next((r for r in rules.rules if r.age_range is not None), None)
    if rule is None:
        return None
    lo, hi = rule.age_range
    return f"{round((lo + hi) / 2):03d}Y"


def _comments(sr) -> dict:
    """The summary and the comments of the SR's Qualitative Evaluations, as the SR holds them."""
    out = {"summary": "", "comments": []}
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if name != "Qualitative Evaluations":
            continue
        for child in item.ContentSequence:
            meaning = child.ConceptNameCodeSequence[0].CodeMeaning
            if child.ValueType == "CODE" and meaning == "CAD Processing and Findings Summary":
                out["summary"] = str(child.ConceptCodeSequence[0].CodeMeaning)
            elif child.ValueType == "TEXT":
                out["comments"].append(str(child.TextValue))
    return out


def result_examples(bundle_dir: Path) -> dict:
    """The SR of an accepted and of a refused synthetic image, and the accepted image's Secondary
    Capture, produced by the locked bundle of the run. ``{"examples": [...], "secondary_capture":
    {...}}``, or ``{"unavailable": why}`` when the bundle cannot be used."""
    import numpy as np
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from cxr_device.runtime.bundle import load_bundle
    from cxr_device.runtime.dicom_results import (
        SC_BANNER,
        DeviceIdentity,
        build_secondary_capture,
        build_sr,
    )
    from cxr_device.runtime.pipeline import DevicePipeline
    from cxr_device.synth import phantom
    from cxr_device.synth_dicom import (
        SYNTHETIC_DATE,
        SYNTHETIC_TIME,
        write_synthetic_dicom,
    )

    try:
        bundle = load_bundle(bundle_dir, None, environment_key=False)
    except (CxrDeviceError, OSError) as err:
        return {"unavailable": f"the run's bundle cannot be used ({err})"}
    device = DeviceIdentity.from_bundle(bundle)
    age = _age_inside(bundle.rules)
    header = {"PatientAge": age} if age else {}
    cases = [("accepted", ("a frontal (PA) chest phantom with a simulated opacity, which the locked input rules "
                           "accept"), {}),
             ("refused", "the same phantom labelled a left lateral view, which the locked input rules refuse",
              {"ViewPosition": "LL", "PatientOrientation": ["P", "F"]})]
    image = phantom(512, True, False, np.random.default_rng([0, 1]))
    examples, secondary = [], {}
    with tempfile.TemporaryDirectory(prefix="cxr-device-usability-") as scratch:
        folder = Path(scratch)
        inputs = []
        for seed, (name, _, extra) in enumerate(cases):
            ds = dcmread(write_synthetic_dicom(folder / f"{name}.dcm", image, seed, **{**header, **extra}))
            # UIDs from the example's name, not the temporary folder: the same run, the same SR
            uid = {k: generate_uid(entropy_srcs=["cxr-device usability example", k, name])
                   for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
            for keyword, value in uid.items():
                setattr(ds, keyword, value)
            ds.file_meta.MediaStorageSOPInstanceUID = uid["SOPInstanceUID"]
            inputs.append(ds)
        predictions = DevicePipeline(bundle).run(inputs, heatmap_dir=folder / "maps", keep_datasets=True)
        for (name, description, _), prediction in zip(cases, predictions):
            sr = build_sr(prediction, device)
            for keyword in ("ContentDate", "InstanceCreationDate"):
                setattr(sr, keyword, SYNTHETIC_DATE)
            for keyword in ("ContentTime", "InstanceCreationTime"):
                setattr(sr, keyword, SYNTHETIC_TIME)
            path = folder / f"{name}_sr.dcm"
            sr.save_as(path, enforce_file_format=True)
            examples.append({"name": name, "description": description, "status": prediction.status,
                             "decision": prediction.decision, "probability": prediction.probability,
                             "threshold": prediction.threshold, "reason": prediction.reason,
                             **_comments(sr), **render_sr(path)})
            if prediction.heatmap and not secondary:
                sc = build_secondary_capture(prediction, device, prediction.heatmap)
                secondary = {"banner": SC_BANNER, "series_description": str(sc.SeriesDescription),
                             "image_comments": str(sc.ImageComments),
                             "burned_in_annotation": str(sc.BurnedInAnnotation)}
    return {"examples": examples, "secondary_capture": secondary or None,
            "synthetic_date": f"{SYNTHETIC_DATE[:4]}-{SYNTHETIC_DATE[4:6]}-{SYNTHETIC_DATE[6:]}"}


def admin_commands() -> list[dict]:
    """``{"command", "text"}`` for each command of :data:`ADMIN_COMMANDS`: its ``--help`` as the
    command's own parser prints it."""
    from cxr_device.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    out = []
    for name in ADMIN_COMMANDS:
        command = commands[name]
        command.formatter_class = functools.partial(command.formatter_class, width=HELP_WIDTH)
        out.append({"command": f"cxr-device {name} --help", "text": command.format_help().rstrip("\n") + "\n"})
    return out
