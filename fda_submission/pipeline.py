"""``cxr-device run``: one configuration, every step, one run directory, and its manifest.

Steps: (synth) -> cohort -> eda -> train -> evaluate -> submission. Each step reads the files of
the steps before it. A step is skipped when its *fingerprint* (its settings plus the sha256 of its
input files) equals the one recorded in ``manifest.json`` and its recorded outputs are intact;
``force`` re-runs everything, ``from_step`` that step and the ones after it. A training that was
interrupted continues from ``model/last.pt`` when its settings are unchanged.

``manifest.json`` records, per step, the settings, the sha256 of every input and output, the
wall time and whether it ran, was skipped or resumed; and for the run, the package version, git
commit (and whether the tree had uncommitted changes), seeds, Python / torch / CUDA versions, the
GPU and the SOUP list. It is rewritten after every step, so an interrupted run keeps its record.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from cxr_device import __version__
from cxr_device.cohort import build_cohort, write_cohort
from cxr_device.eda import run_eda
from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file
from cxr_device.image_index import index_images
from cxr_device.run_layout import LAST, RunLayout
from cxr_device.synth import METADATA_NAME, generate
from cxr_device.train_config import config_from_dict
from cxr_device.training import train
from validation.evaluation import evaluate_run

from . import STEPS
from .render import render_documents
from .run_config import RunConfig
from .soup import soup_list
from .trace import matrix_rows

RAN, SKIPPED, RESUMED = "ran", "skipped (up to date)", "resumed from model/last.pt"
#: The folders each step writes (RunLayout attribute names).
OUTPUT_DIRS = {"synth": ["data"], "cohort": ["cohort"], "eda": ["eda"], "train": ["model"],
               "evaluate": ["evaluation", "bundle"], "submission": ["submission"]}


class Pipeline:
    """One run of the pipeline over a run directory."""

    def __init__(self, config: RunConfig, out: str | Path, progress: bool = True, log: Callable[[str], None] = print):
        self.config, self.out, self.progress, self.log = config, Path(out), progress, log
        self.layout = RunLayout(self.out)
        self.manifest_path = self.layout.manifest
        previous = json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file() else {}
        self.previous_steps = previous.get("steps", {})
        self.steps = [s for s in STEPS if s != "synth" or config.synthetic is not None]

    # --- inputs and settings of each step ------------------------------------------------------
    @property
    def cohort_settings(self):
        settings = self.config.cohort
        if self.config.synthetic is not None:
            data = self.layout.data
            settings = replace(settings, metadata=str(data / METADATA_NAME), images=(str(data),), folders=None)
        return settings

    def _settings(self, step: str) -> dict:
        c = self.config
        return {
            "synth": lambda: asdict(c.synthetic),
            "cohort": lambda: self.cohort_settings.as_dict(),
            "eda": lambda: c.eda,
            "train": lambda: config_from_dict(c.train, c.source).as_dict(),
            "evaluate": lambda: c.evaluate,
            "submission": lambda: c.submission,
        }[step]()

    def _inputs(self, step: str) -> dict[str, str]:
        """sha256 of each input file (a listing digest for image folders)."""
        run, files = self.layout, []
        if step == "cohort":
            s = self.cohort_settings
            files = [p for p in (s.metadata, s.train_val_list, s.test_list) if p]
            roots = list(s.images) + ([s.folders] if s.folders else [])
            listings = {f"{r} (listing)": d["listing_sha256"] for r, d in index_images(roots).roots.items()} \
                if roots and not s.metadata_only else {}
            return {**{str(f): sha256_file(f) for f in files}, **listings}
        if step in ("eda", "train"):
            files = [run.cohort_csv]
        elif step == "evaluate":
            files = [run.cohort_csv, run.checkpoint()]
        elif step == "submission":
            files = [run.metrics, run.device_json, run.eda_json]
            files += [Path(p) for p in (self.config.submission["profile"], self.config.submission["junit"]) if p]
        return {str(f): sha256_file(f) for f in files if Path(f).is_file()}

    def _output_dirs(self, step: str) -> list[Path]:
        return [getattr(self.layout, d) for d in OUTPUT_DIRS[step]]

    def _outputs(self, step: str) -> dict[str, str]:
        return {str(p.relative_to(self.out)): sha256_file(p) for d in self._output_dirs(step) if d.is_dir()
                for p in sorted(d.rglob("*")) if p.is_file()}

    # --- running -------------------------------------------------------------------------------
    def run(self, force: bool = False, from_step: str | None = None) -> dict:
        if from_step is not None and from_step not in self.steps:
            raise CxrDeviceError(f"--from {from_step!r} is not a step of this run; steps: {', '.join(self.steps)}")
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self._header()
        started = time.perf_counter()
        rerun = force  # with --from, that step and every later one; otherwise fingerprints decide: a step's
        for step in self.steps:  # inputs include the outputs of the steps it depends on
            rerun = rerun or step == from_step
            settings, inputs = self._settings(step), self._inputs(step)
            fingerprint = _digest({"settings": settings, "inputs": inputs})
            before = self.previous_steps.get(step, {})
            if not rerun and before.get("complete") and before.get("fingerprint") == fingerprint \
                    and before.get("outputs") == self._outputs(step):
                manifest["steps"][step] = {**before, "status": SKIPPED}
                self.log(f"{step:<10} up to date, skipped")
                self._write(manifest, started)
                continue
            manifest["steps"][step] = {"status": "running", "complete": False, "fingerprint": fingerprint,
                                       "settings": settings, "inputs": inputs}
            self._write(manifest, started)
            self.log(f"{step:<10} running ...")
            t0 = time.perf_counter()
            # a step may only continue earlier work (a training's last.pt) when nothing it depends on changed
            restart = force or from_step is not None or before.get("fingerprint") != fingerprint
            status = getattr(self, f"_run_{step}")(restart)
            manifest["steps"][step].update(status=status, complete=True, seconds=round(time.perf_counter() - t0, 2),
                                           outputs=self._outputs(step), finished_at=_now())
            self.log(f"{step:<10} {status} in {manifest['steps'][step]['seconds']:.1f} s")
            self._write(manifest, started)
        return manifest

    def _run_synth(self, _restart: bool) -> str:
        shutil.rmtree(self.layout.data, ignore_errors=True)
        generate(self.layout.data, self.config.synthetic, progress=self.progress)
        return RAN

    def _run_cohort(self, _restart: bool) -> str:
        cohort = build_cohort(self.cohort_settings)
        write_cohort(cohort, self.layout.cohort)
        if cohort.n_invalid:
            self.log(f"cohort     {cohort.n_invalid} invalid row(s) excluded: see cohort/exclusions.csv")
        return RAN

    def _run_eda(self, _restart: bool) -> str:
        run_eda(self.layout.cohort, self.layout.eda, self.config.eda["pixel_sample"], self.config.eda["seed"],
                progress=self.progress)
        return RAN

    def _run_train(self, restart: bool) -> str:
        config = config_from_dict(self.config.train, self.config.source)
        model_dir = self.layout.model
        saved = self.layout.train_config
        resume = self.layout.checkpoint(LAST).is_file() and not restart and saved.is_file() \
            and yaml.safe_load(saved.read_text()) == config.as_dict() \
            and not self.previous_steps.get("train", {}).get("complete")
        if not resume:
            shutil.rmtree(model_dir, ignore_errors=True)
        train(self.layout.cohort, self.out, config, resume=resume, progress=self.progress)
        return RESUMED if resume else RAN

    def _run_evaluate(self, _restart: bool) -> str:
        e = self.config.evaluate
        evaluate_run(self.out, e["bootstrap"], e["seed"], e["target_sensitivity"], e["rules"], progress=self.progress)
        return RAN

    def _run_submission(self, _restart: bool) -> str:
        s = self.config.submission
        shutil.rmtree(self.layout.submission, ignore_errors=True)
        render_documents(self.out, self.layout.submission, s["profile"], tuple(s["formats"]),
                         matrix_rows(Path(s["junit"])) if s["junit"] else None)
        return RAN

    # --- manifest ------------------------------------------------------------------------------
    def _header(self) -> dict:
        c = self.config
        return {
            "format": "cxr-device-manifest/1",
            "run": c.name,
            "config_file": c.source,
            "config_sha256": sha256_file(c.source) if c.source and Path(c.source).is_file() else None,
            "config": c.raw,
            "package_version": __version__,
            **_git(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "seeds": {"cohort": c.cohort.seed, "eda": c.eda["seed"], "train": c.train.get("seed"),
                      "evaluate": c.evaluate["seed"], "synth": c.synthetic.seed if c.synthetic else None},
            "soup": soup_list(),
            "started_at": _now(),
            "steps": {},
        }

    def _write(self, manifest: dict, started: float) -> None:
        manifest["wall_seconds"] = round(time.perf_counter() - started, 2)
        manifest["updated_at"] = _now()
        self.manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git() -> dict:
    """The commit of the package's source tree (None for an installed wheel) and whether it was dirty."""
    source = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
