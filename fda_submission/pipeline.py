"""``cxr-device run``: one configuration, every step, one run directory, and its manifest.

Steps: (synth) -> cohort -> eda -> train -> evaluate -> submission. Each step reads the files of
the steps before it. A step is skipped when its *fingerprint* (its settings plus the sha256 of its
input files) equals the one recorded in ``manifest.json`` and its recorded outputs are intact;
``force`` re-runs everything, ``from_step`` that step and the ones after it. A training that was
interrupted continues from ``model/last.pt`` when its settings are unchanged.

The run folder may be neither inside a folder the run reads images from nor hold one
(:func:`~fda_submission.run_config.check_run_folder`). It is never emptied wholesale. A folder
that holds files but is not a run of this configuration (no ``manifest.json``, or one of another
run) is refused unless ``force``. A step that runs again first removes the files its previous run
recorded as its outputs (also when it was interrupted), and nothing else: files someone put
beside them are kept and never recorded.

A step that leaves rows or images out (invalid metadata rows, images that cannot be decoded)
records how many (``left_out``) and the file that lists them (``left_out_listed_in``);
:func:`left_out_lines` says so in words, and ``cxr-device run`` exits 1.

``manifest.json`` records, per step, the settings, the sha256 of every input and output, the
files that were there before it ran (``foreign``), the wall time, what it left out, and whether
it ran, was skipped or resumed; and for the run, the package version, git
commit (and whether the tree had uncommitted changes), seeds, Python / torch / CUDA versions, the
GPU and the SOUP list. It is rewritten after every step, so an interrupted run keeps its record.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from cxr_device import __version__
from cxr_device.cohort import build_cohort, write_cohort
from cxr_device.eda import run_eda
from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file
from cxr_device.image_index import index_images
from cxr_device.run_layout import COHORT_CSV, EXCLUSIONS_CSV, LAST, RunLayout
from cxr_device.runtime.bundle import load_bundle
from cxr_device.synth import METADATA_NAME, generate
from cxr_device.train_config import config_from_dict
from cxr_device.training import train
from cxr_device.yaml_io import load_yaml
from validation.acceptance import read_targets
from validation.assessment import ASSESSMENT, assess, left_out
from validation.assessment_inputs import input_set
from validation.comparison import COMPARISON
from validation.evaluation import evaluate_run

from . import STEPS
from .profile import default_profile_path
from .render import CHECKS_JSON, prepare, write_package
from .run_config import RunConfig, check_run_folder, threshold_policy
from .soup import soup_list
from .trace import matrix_rows

RAN, SKIPPED, RESUMED = "ran", "skipped (up to date)", "resumed from model/last.pt"
#: The folders each step writes (RunLayout attribute names).
OUTPUT_DIRS = {"synth": ["data"], "cohort": ["cohort"], "development": ["development"], "eda": ["eda"],
               "train": ["model"], "members": ["members_root"], "evaluate": ["evaluation", "bundle"],
               "assess": ["assessment_root"], "submission": ["submission"]}
#: What an assessment of a development set says of itself (the documents do not present it as evidence).
DEVELOPMENT_ROLE = "external development set: the calibration and the threshold (and the recipe) were chosen on it"


class Pipeline:
    """One run of the pipeline over a run directory."""

    def __init__(self, config: RunConfig, out: str | Path, progress: bool = True, log: Callable[[str], None] = print):
        check_run_folder(config, out)
        self.config, self.out, self.progress, self.log = config, Path(out), progress, log
        self.findings: list[str] = []  # the submission step's consistency findings, in words
        self.layout = RunLayout(self.out)
        self.manifest_path = self.layout.manifest
        previous, self.not_this_run = self._previous_manifest()
        # another run's record (or none) is never trusted: nothing is skipped or removed on its word
        self.previous_steps = previous.get("steps", {}) if self.not_this_run is None else {}
        optional = {"synth": config.synthetic is not None, "development": bool(config.development["sets"]),
                    "members": bool(config.ensemble), "assess": bool(config.assess or config.development["sets"])}
        self.steps = [s for s in STEPS if optional.get(s, True)]

    def _previous_manifest(self) -> tuple[dict, str | None]:
        """The folder's manifest, and why the folder is not a run of this configuration (None
        when it is one, or is empty or absent: then it may be written without ``force``)."""
        if self.out.exists() and not self.out.is_dir():
            raise CxrDeviceError(f"{self.out}: exists and is not a folder; choose another --out")
        if not self.out.is_dir() or not any(self.out.iterdir()):
            return {}, None
        if not self.manifest_path.is_file():
            return {}, f"it has no {self.manifest_path.name}"
        try:
            previous = json.loads(self.manifest_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            return {}, f"its {self.manifest_path.name} cannot be read ({err})"
        if not isinstance(previous, dict) or not isinstance(previous.get("steps", {}), dict):
            return {}, f"its {self.manifest_path.name} is not a cxr-device manifest"
        if previous.get("run") != self.config.name:
            return {}, f"its {self.manifest_path.name} is of run {previous.get('run')!r}"
        return previous, None

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
            "development": lambda: c.development["sets"],
            "members": lambda: {"seeds": c.ensemble["seeds"], "train": config_from_dict(c.train, c.source).as_dict()},
            "evaluate": lambda: {**c.evaluate, "development": c.development, "ensemble": c.ensemble},
            "assess": lambda: {"assess": c.assess, "development": c.development["sets"]},
            "submission": lambda: c.submission,
        }[step]()

    def _inputs(self, step: str) -> dict[str, str]:
        """sha256 of each input file (a listing digest for image folders), files of the run named
        relative to it: a run folder moved or copied elsewhere is still up to date."""
        return {self._key(name): digest for name, digest in self._input_digests(step).items()}

    def _key(self, name: str) -> str:
        path = Path(name)
        return path.relative_to(self.out).as_posix() if path.is_relative_to(self.out) else name

    def _portable(self, value: Any) -> Any:
        """Settings with the paths inside the run folder written relative to it (synthetic data
        the run made, for one), so that a moved run keeps its fingerprints."""
        if isinstance(value, dict):
            return {k: self._portable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._portable(v) for v in value]
        return self._key(value) if isinstance(value, str) and value.startswith(str(self.out)) else value

    def _input_digests(self, step: str) -> dict[str, str]:
        run, files = self.layout, []
        if step == "cohort":
            s = self.cohort_settings
            files = [p for p in (s.metadata, s.train_val_list, s.test_list) if p]
            roots = list(s.images) + ([s.folders] if s.folders else [])
            listings = {f"{r} (listing)": d["listing_sha256"] for r, d in index_images(roots).roots.items()} \
                if roots and not s.metadata_only else {}
            return {**{str(f): sha256_file(f) for f in files}, **listings}
        if step in ("eda", "train", "members"):
            files = [run.cohort_csv]
        elif step == "development":
            return {str(run.cohort_csv): sha256_file(run.cohort_csv),
                    **self._assessed_files(self.config.development["sets"])}
        elif step == "evaluate":
            files = [run.cohort_csv, run.checkpoint()] + [RunLayout(m).checkpoint() for m in self._members()]
            return {**{str(f): sha256_file(f) for f in files if Path(f).is_file()},
                    **self._assessed_files(self.config.development["sets"])}
        elif step == "assess":
            return {str(run.device_json): sha256_file(run.device_json),
                    **self._assessed_files(self.config.assess + self.config.development["sets"])}
        elif step == "submission":
            files = [run.metrics, run.device_json, run.eda_json]
            files += [run.assessment(s["name"]) / ASSESSMENT for s in self.config.assess + self.config.development["sets"]]
            files += sorted(run.comparison_root.glob(f"*/{COMPARISON}"))  # `compare --run` outputs the PCCP cites
            files += [Path(p) for p in (self.config.submission["profile"], self.config.submission["junit"]) if p]
        return {str(f): sha256_file(f) for f in files if Path(f).is_file()}

    def _members(self) -> list[Path]:
        """The run folders of the ensemble's further members (none without ``ensemble:``)."""
        return [self.layout.member(seed) for seed in (self.config.ensemble or {}).get("seeds", [])]

    def _assessed_files(self, sets: list[dict]) -> dict[str, str]:
        """sha256 of every file the labelled ``sets`` read (a listing digest for folders)."""
        out: dict[str, str] = {}
        for s in sets:
            files = [p for p in (s["metadata"], s["labels"]) if p]
            files += [Path(s["cohort"]) / COHORT_CSV] if s["cohort"] else []
            roots = [p for p in (s["folders"], s["dicom"], *s["images"]) if p]
            out.update({str(f): sha256_file(f) for f in files if Path(f).is_file()})
            out.update({f"{r} (listing)": d["listing_sha256"] for r, d in index_images(roots).roots.items()})
        return out

    def _files(self, step: str) -> dict[str, str]:
        """Every file now in the step's folders (relative path -> sha256)."""
        folders = [getattr(self.layout, d) for d in OUTPUT_DIRS[step]]
        return {p.relative_to(self.out).as_posix(): sha256_file(p) for d in folders if d.is_dir()
                for p in sorted(d.rglob("*")) if p.is_file()}

    def _intact(self, outputs: dict[str, str] | None) -> bool:
        """True when every recorded output is still there with its recorded sha256."""
        return bool(outputs) and all((self.out / rel).is_file() and sha256_file(self.out / rel) == digest
                                     for rel, digest in outputs.items())

    def _remove(self, step: str, relative: list[str]) -> None:
        """Delete these files (the step's own, from the manifest), then the folders that this
        emptied below the step's folders; never anything else."""
        roots = {getattr(self.layout, d).resolve() for d in OUTPUT_DIRS[step]}
        for rel in sorted(relative):
            path = self.out / rel
            if not (path.is_file() or path.is_symlink()) or not any(r in path.resolve().parents for r in roots):
                continue  # already gone, or a recorded path that leads outside the step's folders
            path.unlink()
            parent = path.parent
            while parent.resolve() not in roots and parent.resolve() != self.out.resolve() \
                    and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    # --- running -------------------------------------------------------------------------------
    def run(self, force: bool = False, from_step: str | None = None) -> dict:
        """Run every step that is not up to date (all of them with ``force``; ``from_step`` and the
        later ones); return the manifest, also written to ``manifest.json`` after every step."""
        if from_step is not None and from_step not in self.steps:
            raise CxrDeviceError(f"--from {from_step!r} is not a step of this run; steps: {', '.join(self.steps)}")
        if self.not_this_run and not force:
            raise CxrDeviceError(
                f"{self.out}: this folder holds files but is not a run of {self.config.name!r} ({self.not_this_run}); "
                "nothing was changed. Choose a new or empty --out, or add --force to write the run into it "
                "(files of the same names as the run's are replaced; no other file is deleted)")
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self._header()
        started = time.perf_counter()
        rerun = force  # with --from, that step and every later one; otherwise fingerprints decide: a step's
        for step in self.steps:  # inputs include the outputs of the steps it depends on
            rerun = rerun or step == from_step
            settings, inputs = self._settings(step), self._inputs(step)
            fingerprint = _digest({"settings": self._portable(settings), "inputs": inputs})
            before = self.previous_steps.get(step, {})
            if not rerun and before.get("complete") and before.get("fingerprint") == fingerprint \
                    and self._intact(before.get("outputs")):
                manifest["steps"][step] = {**before, "status": SKIPPED}
                self.log(f"{step:<10} up to date, skipped")
                self._write(manifest, started)
                continue
            # a step may only continue earlier work (a training's last.pt) when nothing it depends on changed
            restart = force or from_step is not None or before.get("fingerprint") != fingerprint
            resume = step == "train" and self._can_resume(restart, before)
            ours = [rel for rel in before.get("outputs") or {} if (self.out / rel).exists()]
            if not resume:
                self._remove(step, ours)
                ours = []
            foreign = {rel: digest for rel, digest in self._files(step).items() if rel not in ours}
            entry = manifest["steps"][step] = {"status": "running", "complete": False, "fingerprint": fingerprint,
                                               "settings": settings, "inputs": inputs, "foreign": foreign}
            self._write(manifest, started)
            self.log(f"{step:<10} running ...")
            t0 = time.perf_counter()
            try:
                status, left_out = getattr(self, f"_run_{step}")(resume)
            finally:  # interrupted or failed: what it wrote so far is recorded, so a re-run can remove it
                entry["outputs"] = {rel: digest for rel, digest in self._files(step).items()
                                    if foreign.get(rel) != digest}
                self._write(manifest, started)
            entry.update(status=status, complete=True, seconds=round(time.perf_counter() - t0, 2),
                         left_out=left_out, finished_at=_now())
            if step == "submission":
                entry["consistency_findings"] = self.findings
            if left_out:
                entry["left_out_listed_in"] = self._listed_in(step)
            self.log(f"{step:<10} {status} in {entry['seconds']:.1f} s")
            if left_out:
                self.log(f"{step:<10} {left_out} left out: listed in {self.layout.root / self._listed_in(step)}")
            self._write(manifest, started)
        return manifest

    def _listed_in(self, step: str) -> str:
        """The file (relative to the run) that lists what ``step`` left out, and why."""
        run = self.layout
        path = {"cohort": run.cohort / EXCLUSIONS_CSV, "development": run.development / "leakage.json",
                "eda": run.eda_json, "train": run.train_summary, "members": run.members_root,
                "evaluate": run.metrics, "assess": run.assessment_root}[step]
        return path.relative_to(self.out).as_posix()

    def _can_resume(self, restart: bool, before: dict) -> bool:
        """An interrupted training continues from last.pt when nothing it depends on changed."""
        saved, last = self.layout.train_config, self.layout.checkpoint(LAST)
        return not restart and not before.get("complete") and last.is_file() \
            and last.relative_to(self.out).as_posix() in (before.get("outputs") or {}) and saved.is_file() \
            and load_yaml(saved, "training config") == config_from_dict(self.config.train, self.config.source).as_dict()

    def _run_synth(self, _resume: bool) -> tuple[str, int]:
        generate(self.layout.data, self.config.synthetic, progress=self.progress)
        return RAN, 0

    def _run_cohort(self, _resume: bool) -> tuple[str, int]:
        cohort = build_cohort(self.cohort_settings)
        write_cohort(cohort, self.layout.cohort)
        return RAN, cohort.n_invalid

    def _run_eda(self, _resume: bool) -> tuple[str, int]:
        report = run_eda(self.layout.cohort, self.layout.eda, self.config.eda["pixel_sample"], self.config.eda["seed"],
                         progress=self.progress)
        return RAN, int(report["n_unreadable"])

    def _run_train(self, resume: bool) -> tuple[str, int]:
        last = self.layout.checkpoint(LAST)
        if last.is_file() and not resume:  # the run's own last.pt was removed above: this one is not the run's
            raise CxrDeviceError(f"{last}: a training checkpoint this run did not write (it is not recorded in "
                                 f"{self.manifest_path}); nothing was changed - move it away or choose another --out")
        result = train(self.layout.cohort, self.out, config_from_dict(self.config.train, self.config.source),
                       resume=resume, progress=self.progress)
        return (RESUMED if resume else RAN), len(result.left_out)

    def _run_development(self, _resume: bool) -> tuple[str, int]:
        """No image of a development set in the cohort (pixels compared, not names): else stop."""
        from cxr_device.cohort import read_cohort
        from validation.leakage import check_disjoint, pediatric_patient, write_report

        frame, summary = read_cohort(self.layout.cohort)
        development = [(s["name"], str(item.path)) for s in self.config.development["sets"]
                       for item in input_set(s).items]
        report = check_disjoint(frame[["image_id", "path", "split", "patient_id"]].to_dict("records"), development,
                                workers=self.config.train.get("workers") or 1,
                                patient_of=pediatric_patient if summary.get("dataset") == "pediatric" else None)
        write_report(report, self.layout.development)
        return RAN, len(report.undecodable)

    def _run_members(self, _resume: bool) -> tuple[str, int]:
        """The ensemble's further members: each trained like the run's model, with its own seed."""
        left_out = 0
        for seed, folder in zip(self.config.ensemble["seeds"], self._members()):
            config = config_from_dict({**self.config.train, "seed": seed}, self.config.source)
            member = RunLayout(folder)
            done = member.train_summary.is_file() and member.train_config.is_file() \
                and load_yaml(member.train_config, "training config") == config.as_dict()
            if done:
                self.log(f"members    seed {seed}: trained before, kept")
                continue
            resume = member.checkpoint(LAST).is_file() and member.train_config.is_file() \
                and load_yaml(member.train_config, "training config") == config.as_dict()
            self.log(f"members    seed {seed}: {'resuming' if resume else 'training'} into {folder}")
            result = train(self.layout.cohort, folder, config, resume=resume, progress=self.progress)
            left_out += len(result.left_out)
        return RAN, left_out

    def _run_evaluate(self, _resume: bool) -> tuple[str, int]:
        e, profile = self.config.evaluate, self.config.submission["profile"]
        prevalence = e["intended_prevalence"] or (read_targets(profile).prevalence if profile else None)
        metrics = evaluate_run(self.out, e["bootstrap"], e["seed"], e["target_sensitivity"], e["rules"],
                               progress=self.progress, calibration=e["calibration"], policy=threshold_policy(e),
                               tta=e["tta"], members=self._members(), development=self.config.development["sets"],
                               intended_prevalence=prevalence, selection=self.config.development["selection"])
        return RAN, int(metrics["left_out"]["n"])

    def _run_assess(self, _resume: bool) -> tuple[str, int]:
        """Each listed set through the locked bundle; left out: excluded, refused or unreadable inputs."""
        # the criteria and prevalence the profile states, exactly as `assess --profile` reads them
        targets = read_targets(self.config.submission["profile"] or default_profile_path())
        bundle = load_bundle(self.layout.bundle)
        missing = 0
        sets = [(s, None) for s in self.config.assess] + [(s, DEVELOPMENT_ROLE) for s in self.config.development["sets"]]
        for s, role in sets:
            inputs = input_set(s)
            document = assess(bundle, inputs, self.layout.assessment(s["name"]), s["name"], targets.acceptance,
                              targets.prevalence, s["bootstrap"], s["seed"], self.progress, role=role)
            missing += left_out(document)
            if document["shift"] and document["shift"].get("warning"):
                self.log(f"assess     {s['name']}: WARNING {document['shift']['warning']}")
        return RAN, missing

    def _run_submission(self, _resume: bool) -> tuple[str, int]:
        """The documents; with consistency findings they are drafts that list them on top (the
        manifest records how many, and ``run`` says so and exits 1)."""
        s = self.config.submission
        prepared = prepare(self.out, s["profile"], matrix_rows(Path(s["junit"])) if s["junit"] else None,
                           Path(s["junit"]) if s["junit"] else None)
        write_package(prepared, self.layout.submission, tuple(s["formats"]))
        self.findings = [line for f in prepared.findings for line in f.lines()]
        if self.findings:
            self.log(f"submission {len(prepared.findings)} consistency finding(s): the documents are drafts that list "
                     f"them on top; see {self.layout.submission / CHECKS_JSON}")
        return RAN, 0

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


def left_out_lines(manifest: dict, out: str | Path) -> list[str]:
    """One line per step of ``manifest`` that left something out: how many and where they are
    listed with their reasons (empty when nothing was left out)."""
    words = {"cohort": "invalid metadata row(s) excluded", "eda": "sampled image(s) could not be read",
             "development": "image(s) could not be decoded for the leakage check",
             "members": "image(s) could not be decoded and were left out of training an ensemble member",
             "train": "image(s) could not be decoded and were left out of training",
             "evaluate": "image(s) could not be decoded and were not scored"}
    return [f"{step:<10} {entry['left_out']} {words.get(step, 'left out')}: listed in "
            f"{Path(out) / entry.get('left_out_listed_in', '')}"
            for step, entry in manifest["steps"].items() if entry.get("left_out")]


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
