"""The run configuration: one YAML for the whole pipeline, validated when it is loaded.

Sections and their keys (every CLI flag of the steps has one)::

    name: demo                     # run folder runs/<name> unless --out is given
    seed: 0                        # default seed of every step
    data:                          # cxr-device cohort (and, for demos, synth)
      metadata | folders | images | metadata_only | min_age | max_age | sexes | views | split |
      val_fraction | test_fraction | train_val_list | test_list | class_cap | balance_train |
      val_prevalence | seed
      synthetic: {n_patients, image_size, prevalence}   # generate data into RUN/data first
    eda: {pixel_sample, seed}
    train: {...}                   # the keys of cxr-device train's --config (model:, augmentation:, ...)
    evaluate: {bootstrap, seed, target_sensitivity, rules, calibration, threshold_policy,
               threshold_target, plateau_tolerance}
    assess:                        # standalone assessments of the locked bundle (a list; optional)
      - {name, cohort + split | folders | metadata + images | dicom + labels, bootstrap, seed}
    submission: {profile, formats, junit}

Every value is typed and checked here, before any step runs; an error names the file, the key
(``train.batch_size``) and the problem. Relative paths are resolved against the folder of the
YAML file.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import pydantic.dataclasses
from pydantic import AfterValidator, Field

from cxr_device.cohort import CohortSettings
from cxr_device.eda import PixelSample
from cxr_device.errors import CxrDeviceError
from cxr_device.filters import Filters
from cxr_device.run_layout import is_safe_name
from cxr_device.synth import METADATA_NAME, SynthSettings
from cxr_device.train_config import config_from_dict
from cxr_device.validated import (
    RANGE,
    SETTINGS,
    Proportion,
    Replicates,
    Seed,
    build,
    check_keys,
    field_names,
)
from cxr_device.yaml_io import load_yaml

T = TypeVar("T")


def _run_name(name: str) -> str:
    if not is_safe_name(name):
        raise ValueError("a name is up to 100 letters, digits, '.', '_' and '-', not starting with '.' "
                         "(it names a folder: runs/<name>, assessment/<name>)")
    return name


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class _Header:
    name: Annotated[str, AfterValidator(_run_name)]
    seed: Seed = 0


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class EdaSettings:
    """``eda:``: images per class decoded for intensity histograms (0 skips them), and their seed."""

    pixel_sample: PixelSample = 100
    seed: Seed = 0


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class EvaluateSettings:
    """``evaluate:``: bootstrap replicates, seed, the target-sensitivity rule, the rules file, the
    calibration and the threshold policy (see ``cxr-device evaluate --help``)."""

    bootstrap: Replicates = 2000
    seed: Seed = 0
    target_sensitivity: Proportion = 0.9
    rules: str | None = None
    calibration: Literal["platt", "temperature", "none"] = "platt"
    threshold_policy: Literal["max_f1", "youden", "target_sensitivity", "target_specificity", "f1_plateau",
                              "max_accuracy"] = "max_f1"
    threshold_target: Proportion | None = None
    plateau_tolerance: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.01
    tta: Literal["none", "five_crop"] = "none"  # test-time views averaged (locked in the bundle)
    intended_prevalence: Proportion | None = None  # the calibration is re-weighted to it (decisions unchanged)


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class SelectionSettings:
    """``development.selection``: the recipe study's procedure, declared before any candidate was scored."""

    # every candidate of every declared round (at most 6 a round); bounded against a hostile config
    candidates: Annotated[list[str], Field(min_length=1, max_length=24)]
    metric: str
    tie_break: str
    chosen: str
    declared_in: str | None = None


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class EnsembleSettings:
    """``ensemble:``: the seeds of the further members, each trained like ``train:`` (its seed replaced)."""

    seeds: Annotated[list[Seed], Field(min_length=1, max_length=7)]


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class AssessSettings:
    """One entry of ``assess:``: a named labelled set, from exactly one source."""

    name: Annotated[str, AfterValidator(_run_name)]
    cohort: str | None = None
    split: str = "test"
    folders: str | None = None
    metadata: str | None = None
    images: list[str] = field(default_factory=list)
    dicom: str | None = None
    labels: str | None = None
    bootstrap: Replicates = 2000
    seed: Seed = 0


@pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)
class SubmissionSettings:
    """``submission:``: the device profile, the document formats and a JUnit report for tracing."""

    profile: str | None = None
    formats: Annotated[list[Literal["md", "html", "pdf"]], Field(min_length=1)] = field(
        default_factory=lambda: ["md", "html"])
    junit: str | None = None


SECTIONS = {"name", "seed", "data", "eda", "train", "ensemble", "evaluate", "development", "assess", "submission"}
DEVELOPMENT_KEYS = {"sets", "selection"}
FILTER_KEYS = field_names(Filters)
DATA_KEYS = field_names(CohortSettings) - {"filters"} | FILTER_KEYS | {"synthetic"}
PATH_KEYS = ("metadata", "folders", "train_val_list", "test_list")


@dataclass
class RunConfig:
    """The resolved configuration of a run."""

    name: str
    seed: int
    cohort: CohortSettings
    synthetic: SynthSettings | None
    eda: dict
    train: dict  # every TrainConfig key, validated (TrainConfig is rebuilt from it when the step runs)
    evaluate: dict
    submission: dict
    assess: list[dict] = field(default_factory=list)
    source: str = ""
    raw: dict = field(default_factory=dict)
    #: external development sets (calibration and threshold are fitted on them) and the recipe study
    development: dict = field(default_factory=lambda: {"sets": [], "selection": None})
    ensemble: dict | None = None  # {"seeds": [...]}: further members of an ensemble


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run YAML; errors name the file, the key and the allowed keys or values."""
    path = Path(path)
    where = str(path)
    document = load_yaml(path, "run configuration")
    top = check_keys(where, document, SECTIONS)
    named = top.get("name") is not None
    try:
        header = build(_Header, where, {"name": top["name"] if named else path.stem,
                                        **({"seed": top["seed"]} if "seed" in top else {})})
    except CxrDeviceError as err:
        raise CxrDeviceError(str(err) if named else f"{err}; without name: the file name is used, so add one") from None
    base = path.resolve().parent

    def resolved(value: str | None) -> str | None:
        return str((base / value).resolve()) if value else value

    synthetic, cohort = _data(where, top.get("data"), header.seed, resolved)
    train = asdict(config_from_dict(_seeded(top.get("train"), header.seed), where, "train."))
    evaluate = asdict(_section(EvaluateSettings, where, "evaluate", top.get("evaluate"), header.seed))
    evaluate["rules"] = resolved(evaluate["rules"])
    _validated(where, "evaluate", lambda: threshold_policy(evaluate))
    assess = _assess(where, top.get("assess"), header.seed, resolved)
    development = _development(where, top.get("development"), header.seed, resolved, {s["name"] for s in assess})
    ensemble = asdict(_section(EnsembleSettings, where, "ensemble", top["ensemble"])) if top.get("ensemble") else None
    if ensemble and (train["seed"] in ensemble["seeds"] or len(set(ensemble["seeds"])) < len(ensemble["seeds"])):
        raise CxrDeviceError(f"{where}: ensemble.seeds: each member needs its own seed, and train.seed "
                             f"({train['seed']}) is the first member's")
    submission = asdict(_section(SubmissionSettings, where, "submission", top.get("submission")))
    submission.update(profile=resolved(submission["profile"]), junit=resolved(submission["junit"]))
    eda = asdict(_section(EdaSettings, where, "eda", top.get("eda"), header.seed))
    _check_files(where, evaluate["rules"], submission["profile"])
    return RunConfig(name=header.name, seed=header.seed, cohort=cohort, synthetic=synthetic, eda=eda, train=train,
                     evaluate=evaluate, submission=submission, assess=assess, source=where, raw=top,
                     development=development, ensemble=ensemble)


def _development(where: str, given: Any, seed: int, resolved: Callable[[str | None], str | None],
                 assessed: set[str]) -> dict:
    """The ``development:`` section: the external development sets (each like an ``assess:``
    entry, never one of the assessed sets) and the selection procedure."""
    if given is None:
        return {"sets": [], "selection": None}
    section = check_keys(f"{where}: development", given, DEVELOPMENT_KEYS)
    sets = _assess(where, section.get("sets"), seed, resolved, "development.sets")
    if not sets:
        raise CxrDeviceError(f"{where}: development.sets: name at least one external development set")
    shared = sorted(assessed & {s["name"] for s in sets})
    if shared:
        raise CxrDeviceError(f"{where}: development.sets: {', '.join(shared)} is also an assessed set; a set the "
                             "development decisions were made on cannot be evidence about them")
    selection = section.get("selection")
    if selection is not None:
        values = check_keys(f"{where}: development.selection", selection, field_names(SelectionSettings))
        selection = asdict(build(SelectionSettings, where, values, "development.selection."))
    return {"sets": sets, "selection": selection}


def _data(where: str, given: Any, seed: int, resolved: Callable[[str | None], str | None]
          ) -> tuple[SynthSettings | None, CohortSettings]:
    """The ``data:`` section: the synth settings (or None) and the cohort settings, paths resolved."""
    data = check_keys(f"{where}: data", given, DATA_KEYS)
    synthetic = None
    if "synthetic" in data:
        generated_over = sorted(k for k in ("metadata", "folders", "images") if data.get(k))
        if generated_over:
            raise CxrDeviceError(f"{where}: data: data.synthetic generates the data the cohort is built from; "
                                 f"remove data.{', data.'.join(generated_over)} or data.synthetic")
        spec = check_keys(f"{where}: data.synthetic", data.pop("synthetic"), field_names(SynthSettings))
        synthetic = build(SynthSettings, where, _seeded(spec, seed), "data.synthetic.")
    filters = build(Filters, where, {k: data.pop(k) for k in FILTER_KEYS & set(data)}, "data.")
    filters = replace(filters, sexes=_upper(filters.sexes), views=_upper(filters.views))
    cohort = build(CohortSettings, where, {**_seeded(data, seed), "filters": filters}, "data.")
    cohort = replace(cohort, images=tuple(resolved(p) for p in cohort.images),
                     **{key: resolved(getattr(cohort, key)) for key in PATH_KEYS})
    # with data.synthetic the pipeline points the cohort at the generated data: check those settings now
    as_run = replace(cohort, metadata=METADATA_NAME, images=("data",), folders=None) if synthetic else cohort
    _validated(where, "data", as_run.validate)
    return synthetic, cohort


def input_folders(config: RunConfig) -> dict[str, Path]:
    """The folders the run reads images from, by the key that names them (``data.images[0]``,
    ``assess[1].dicom`` ...): the data's image roots and class folders and the assessed sets'
    image folders. A cohort an assessment reads is not one: it may be the run's own."""
    roots = {f"data.images[{i}]": p for i, p in enumerate(config.cohort.images)}
    roots.update({"data.folders": config.cohort.folders} if config.cohort.folders else {})
    for name, sets in (("assess", config.assess), ("development.sets", config.development["sets"])):
        for i, s in enumerate(sets):
            roots.update({f"{name}[{i}].{key}": s[key] for key in ("folders", "dicom") if s[key]})
            roots.update({f"{name}[{i}].images[{j}]": p for j, p in enumerate(s["images"])})
    return {key: Path(path).resolve() for key, path in roots.items()}


def check_run_folder(config: RunConfig, out: str | Path) -> None:
    """Refuse a run folder inside a folder the run reads images from, or one holding such a folder:
    the run's files would land among its inputs (a PNG of a figure among the training images, a
    changed listing re-running the cohort), or its steps would write beside them."""
    run = Path(out).resolve()
    for key, root in input_folders(config).items():
        if run == root or root in run.parents:
            raise CxrDeviceError(f"{out}: the run folder is inside {root}, the input folder of {key} in "
                                 f"{config.source}: its outputs would land among the inputs; choose an --out "
                                 "outside it")
        if run in root.parents:
            raise CxrDeviceError(f"{root}, the input folder of {key} in {config.source}, is inside the run folder "
                                 f"{out}, where the run writes its files; move the inputs or choose another --out")


def threshold_policy(evaluate: dict):
    """The :class:`~validation.threshold.ThresholdPolicy` of an ``evaluate:`` section (checked at load:
    a target policy needs its target)."""
    from validation.threshold import ThresholdPolicy

    try:
        return ThresholdPolicy(evaluate["threshold_policy"], evaluate["threshold_target"],
                               evaluate["plateau_tolerance"])
    except ValueError as err:
        raise CxrDeviceError(str(err)) from None


def _assess(where: str, given: Any, seed: int, resolved: Callable[[str | None], str | None],
            key: str = "assess") -> list[dict]:
    """The ``assess:`` list (or another list of labelled sets, ``key``): each set named once,
    from exactly one source, paths resolved."""
    if given is None:
        return []
    if not isinstance(given, list):
        raise CxrDeviceError(f"{where}: {key}: expected a list of labelled sets, got {type(given).__name__}")
    sets = []
    for i, entry in enumerate(given):
        prefix = f"{key}[{i}]."
        values = check_keys(f"{where}: {key}[{i}]", entry, field_names(AssessSettings))
        settings = asdict(build(AssessSettings, where, _seeded(values, seed), prefix))
        sources = [k for k in ("cohort", "folders", "metadata", "dicom") if settings[k]]
        if len(sources) != 1:
            raise CxrDeviceError(f"{where}: {prefix.rstrip('.')}: give exactly one of cohort, folders, metadata "
                                 f"(with images) or dicom (with labels); got {', '.join(sources) or 'none'}")
        if bool(settings["images"]) != bool(settings["metadata"]) or bool(settings["labels"]) != bool(settings["dicom"]):
            raise CxrDeviceError(f"{where}: {prefix.rstrip('.')}: metadata goes with images, dicom with labels")
        for key in ("cohort", "folders", "metadata", "dicom", "labels"):
            settings[key] = resolved(settings[key])
        settings["images"] = [resolved(p) for p in settings["images"]]
        sets.append(settings)
    names = [s["name"] for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CxrDeviceError(f"{where}: {key}: each set needs its own name; repeated: {', '.join(repeated)}")
    return sets


def _section(cls: type[T], where: str, name: str, given: Any, seed: int | None = None) -> T:
    """A section's settings object; ``seed`` (the run's) is the default of its ``seed`` key."""
    values = check_keys(f"{where}: {name}", given, field_names(cls))
    return build(cls, where, values if seed is None else _seeded(values, seed), f"{name}.")


def _seeded(values: Any, seed: int) -> Any:
    """``values`` with ``seed`` as the default of its seed key (anything but a mapping is left to be refused)."""
    if values is None:
        return {"seed": seed}
    return {"seed": seed, **values} if isinstance(values, dict) else values


def _upper(codes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    return tuple(code.upper() for code in codes) if codes else None


def _check_files(where: str, rules: str | None, profile: str | None) -> None:
    """Read the rules file and the device profile now, not after the training (imported on use)."""
    from cxr_device.runtime.input_rules import load_rules

    from .profile import load_profile

    for key, given, load in (("evaluate.rules", rules, load_rules), ("submission.profile", profile, load_profile)):
        if given:
            try:
                load(given)
            except CxrDeviceError as err:
                raise CxrDeviceError(f"{where}: {key}: {err}") from None


def _validated(where: str, section: str, check: Callable[[], None]) -> None:
    try:
        check()
    except CxrDeviceError as err:
        raise CxrDeviceError(f"{where}: {section}: {err}") from None
