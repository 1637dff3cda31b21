"""Everything the documents say, gathered from the run directory (plus the device profile).

Numbers, tables and figures come only from the run's files; each file read is listed with its
sha256 in the provenance appendix. A missing input stops with the file and the command that
makes it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file
from cxr_device.run_layout import COHORT_CSV, COHORT_SUMMARY, RULES, RunLayout
from cxr_device.runtime.input_rules import load_rules
from cxr_device.splits import SPLITS

from .agreement import reader_agreement
from .sample_size import study_size
from .soup import soup_list

REFERENCE_STANDARD = {
    "synthetic": ("Labels are the synthetic generator's own: a positive phantom carries a simulated regional "
                  "opacity, a negative one does not. No person read these images; they stand in for data while "
                  "the pipeline is built and tested."),
    "nih": ("Labels of NIH ChestX-ray14 were text-mined from the radiology reports by natural-language "
            "processing (Wang et al., CVPR 2017); the authors estimate their accuracy at over 90%. They are "
            "report-derived, not image re-reads: a finding named in the report counts even when it is not "
            "visible, and findings the report omits are absent."),
    "pediatric": ("Images of the pediatric pneumonia dataset (Kermany et al., Cell 2018) were graded by two "
                  "expert physicians, and the evaluation set was checked by a third; poor-quality films were "
                  "removed. Labels are image-level (normal / bacterial / viral pneumonia)."),
}


#: How the documents name the splits.
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}

#: Pre-specified subgroup levels of the validation plan: 5 age bands, 2 sexes, 2 views.
N_SUBGROUP_LEVELS = 9
MIN_PER_SUBGROUP_LEVEL = 10


def _need(path: Path, command: str) -> Path:
    if not path.is_file():
        raise CxrDeviceError(f"{path}: not found; make it with `{command}`")
    return path


def build_context(run_dir: str | Path, profile: dict, junit_rows: list | None = None) -> dict:
    """The template context of both documents."""
    run = Path(run_dir)
    layout = RunLayout(run)
    read: dict[str, Path] = {}

    def load_json(path: Path, command: str) -> dict:
        read[str(path)] = _need(path, command)
        return json.loads(path.read_text())

    train_summary = load_json(layout.train_summary, f"cxr-device train --out {run}")
    cohort_dir = Path(train_summary.get("cohort", {}).get("dir") or layout.cohort)
    cohort = load_json(cohort_dir / COHORT_SUMMARY, f"cxr-device cohort --out {cohort_dir}")
    eda = load_json(layout.eda_json, f"cxr-device eda --cohort {cohort_dir} --out {layout.eda}")
    layers = load_json(layout.layers, f"cxr-device train --out {run}")
    metrics = load_json(layout.metrics, f"cxr-device evaluate --run {run}")
    device = load_json(layout.device_json, f"cxr-device evaluate --run {run}")
    config_path = _need(layout.train_config, f"cxr-device train --out {run}")
    history_path = _need(layout.history, f"cxr-device train --out {run}")
    rules_path = _need(layout.bundle / RULES, f"cxr-device evaluate --run {run}")
    read.update({str(p): p for p in (config_path, history_path, rules_path, cohort_dir / COHORT_CSV,
                                     layout.predictions)})
    config = yaml.safe_load(config_path.read_text())
    history = pd.read_csv(history_path).to_dict("records")
    rules = load_rules(rules_path)

    test = metrics["splits"]["test"]
    prevalence = profile.get("expected_prevalence") or test["prevalence"]
    # internal estimates are optimistic: the plan assumes the lower bound of their 95% interval
    expected = {m: test[m]["ci95"][0] if test[m]["ci95"][0] is not None else test[m]["value"]
                for m in ("auroc", "sensitivity", "specificity")}
    synthetic = bool(cohort.get("synthetic")) or bool(metrics.get("synthetic"))
    dataset = "synthetic" if synthetic else cohort.get("dataset") or "nih"
    agreement = None
    if profile.get("reader_study_labels"):
        agreement = reader_agreement(profile["reader_study_labels"])
        read[agreement["path"]] = Path(agreement["path"])

    left_out = left_out_images(train_summary, metrics)
    figures = {f"eda_{k}": layout.eda / v for k, v in eda["figures"].items()}
    figures.update({k: layout.evaluation / v for k, v in metrics["figures"].items()})
    return {
        "profile": profile,
        "synthetic": synthetic,
        "dataset": dataset,
        "dataset_name": {"nih": "NIH ChestX-ray14", "pediatric": "Pediatric chest X-ray (Kermany et al.)",
                         "synthetic": "synthetic NIH-format phantoms (cxr-device synth)"}.get(dataset, dataset),
        "reference_standard": REFERENCE_STANDARD.get(dataset, "See the dataset's documentation."),
        "run": {"path": str(run.resolve()), "name": run.name},
        "cohort": cohort,
        "eda": eda,
        "layers": layers,
        "config": config,
        "history": history,
        "best_epoch": train_summary.get("best_epoch"),
        "train_summary": train_summary,
        "metrics": metrics,
        "device": device,
        "rules": [{"id": r.id, "attributes": " or ".join(r.attributes), "expected": r.expected(),
                   "severity": r.severity, "message": r.message} for r in rules.rules],
        "rules_name": rules.name,
        "left_out": left_out,
        "limitations": limitations(rules, metrics, cohort, bool(cohort.get("synthetic")), left_out),
        "sample_size": study_size(profile["acceptance"], expected, prevalence, power=profile.get("power", 0.8),
                                  min_per_class=MIN_PER_SUBGROUP_LEVEL * N_SUBGROUP_LEVELS),
        "expected": expected,
        "agreement": agreement,
        "soup": soup_list(),
        "trace": junit_rows,
        "figures": {k: v for k, v in figures.items() if v.is_file()},
        "provenance": [{"file": _relative(p, run), "sha256": sha256_file(p)} for _, p in sorted(read.items())
                       if p.is_file()],
    }


def _relative(path: Path, run: Path) -> str:
    """A path as the reader of the documents should see it: relative to the run when inside it."""
    try:
        return str(path.resolve().relative_to(run.resolve()))
    except ValueError:
        return str(path)


def left_out_images(train_summary: dict, metrics: dict) -> dict:
    """The cohort's images that could not be decoded and were left out, from train_summary.json
    (every split, as training found them) and metrics.json (validation and test, as evaluation
    found them): ``n``, ``by_split`` (every split, zeros included) and each image with its split
    and reason, in split order then by image id."""
    found: dict[tuple[str, str], dict] = {}
    for images in (train_summary.get("cache", {}).get("unreadable", []),
                   train_summary.get("left_out", {}).get("images", []), metrics.get("left_out", {}).get("images", [])):
        for image in images:
            split = image.get("split", "unknown")
            found.setdefault((split, image["image_id"]), {"image_id": image["image_id"], "split": split,
                                                          "reason": image.get("reason", "")})
    order = {s: i for i, s in enumerate(SPLITS)}
    images = [found[k] for k in sorted(found, key=lambda k: (order.get(k[0], len(order)), k[1]))]
    by_split = {s: 0 for s in SPLITS}
    for image in images:
        by_split[image["split"]] = by_split.get(image["split"], 0) + 1
    return {"n": len(images), "by_split": by_split, "images": images}


def limitations(rules, metrics: dict, cohort: dict, synthetic: bool, left_out: dict | None = None) -> list[str]:
    """Conditions and inputs for which the device must not be used, derived from the locked input
    rules, the training population, the images that could not be used and the measured subgroups."""
    out = []
    if synthetic:
        out.append("The model was trained and evaluated on synthetic phantoms: no clinical performance is claimed.")
    if left_out and left_out["n"]:
        where = ", ".join(f"{SPLIT_NAMES.get(s, s)} {n}" for s, n in left_out["by_split"].items())
        out.append(f"{left_out['n']} image(s) of the development data could not be decoded and were left out ({where}); "
                   "the device refuses such inputs, and performance on them is not established.")
    for rule in rules.rules:
        if rule.severity == "error":
            out.append(f"Inputs whose {' / '.join(rule.attributes)} is not {rule.expected()} are refused "
                       f"({rule.message}).")
    ages = [s["age"] for s in cohort["splits"].values() if s["age"]["n"]]
    if ages:
        lo, hi = min(a["min"] for a in ages), max(a["max"] for a in ages)
        out.append(f"Performance was established on patients aged {lo:g} to {hi:g} years only.")
    else:
        out.append("The ages, sexes and view positions of the development data were not recorded: performance "
                   "by age, sex and view is not established.")
    views = sorted({v for s in cohort["splits"].values() for v in s["view"] if v != "unknown"})
    if views:
        out.append(f"Training and validation images were {', '.join(views)} views only.")
    for row in metrics.get("subgroups", {}).get("test", []):
        if row["unstable"]:
            out.append(f"Performance in the subgroup {row['group']} {row['level']} is not established "
                       f"({row['n_positive']} positive and {row['n_images'] - row['n_positive']} negative test images).")
    return out
