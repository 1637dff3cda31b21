"""Everything the documents say, gathered from the run directory and the device profile.

Numbers, tables and figures come only from the run's files; every file read is listed with its
sha256 in the provenance appendix, and the text names the file each number comes from. Values
typed in the device profile are marked as such. A missing input stops with the file and the
command that makes it.
"""
from __future__ import annotations

import json
from collections import ChainMap
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file
from cxr_device.run_layout import COHORT_CSV, COHORT_SUMMARY, RULES, RunLayout
from cxr_device.runtime.input_rules import load_rules
from cxr_device.splits import SPLITS
from validation.assessment import ACCEPTANCE_METHODS, ASSESSMENT, PREDICTIONS
from validation.comparison import COMPARISON

from . import wording
from .agreement import reader_agreement
from .claims import claim_wording
from .completeness import todo, value_or_todo
from .document_control import controls, issue_date
from .identity import device_identity
from .known_issues import known_issues
from .population import derived
from .risk import load_risk_file, risk_management, risk_rows, verify_risks
from .sample_size import plan_study
from .sbom import runtime_distributions
from .trace import load_requirements
from .tracing import Source
from .training_data import development_images

#: How the documents name the splits.
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
SBOM_NAME = "sbom.cdx.json"
#: Where the weights of a model started, from layers.json ``weights.source``.
RANDOM, IMAGENET, FILE = "random initialisation", "ImageNet-pretrained weights", "weights from a file"


def _need(path: Path, command: str) -> Path:
    if not path.is_file():
        raise CxrDeviceError(f"{path}: not found; make it with `{command}`")
    return path


def build_context(run_dir: str | Path, profile: dict, junit_rows: list | None = None,
                  junit: str | Path | None = None) -> dict[str, Any]:
    """The template context of every document (and the facts the consistency check compares);
    ``junit`` is the JUnit report ``junit_rows`` were read from (the testing summaries count it)."""
    run = Path(run_dir)
    layout = RunLayout(run)
    read: dict[str, Path] = {}

    sources: dict[str, Source] = {}

    def load_json(path: Path, command: str, key: str | None = None) -> dict:
        read[str(path)] = _need(path, command)
        if key:
            sources[key] = Source(_relative(path, run))
        return json.loads(path.read_text())

    train_summary = load_json(layout.train_summary, f"cxr-device train --out {run}", "train_summary")
    cohort_dir = Path(train_summary.get("cohort", {}).get("dir") or layout.cohort)
    cohort = load_json(cohort_dir / COHORT_SUMMARY, f"cxr-device cohort --out {cohort_dir}", "cohort")
    eda = load_json(layout.eda_json, f"cxr-device eda --cohort {cohort_dir} --out {layout.eda}", "eda")
    layers = load_json(layout.layers, f"cxr-device train --out {run}", "layers")
    metrics = load_json(layout.metrics, f"cxr-device evaluate --run {run}", "metrics")
    device = load_json(layout.device_json, f"cxr-device evaluate --run {run}", "device")
    sources.update(config=Source(_relative(layout.train_config, run)), history=Source(_relative(layout.history, run)),
                   calibration=Source(_relative(layout.metrics, run), "calibration"),
                   best_epoch=Source(_relative(layout.train_summary, run), "best_epoch"))
    config_path = _need(layout.train_config, f"cxr-device train --out {run}")
    history_path = _need(layout.history, f"cxr-device train --out {run}")
    rules_path = _need(layout.bundle / RULES, f"cxr-device evaluate --run {run}")
    cohort_csv = _need(cohort_dir / COHORT_CSV, f"cxr-device cohort --out {cohort_dir}")
    read.update({str(p): p for p in (config_path, history_path, rules_path, cohort_csv, layout.predictions)})
    config = yaml.safe_load(config_path.read_text())
    history = pd.read_csv(history_path).to_dict("records")
    rules = load_rules(rules_path)
    assessments = _assessments(layout, read, profile["population"]["age_years"])

    test = metrics["splits"]["test"]
    prevalence = profile["expected_prevalence"] or test["prevalence"]
    expected = planning_values(test)
    synthetic = bool(cohort.get("synthetic")) or bool(metrics.get("synthetic"))
    dataset = "synthetic" if synthetic else cohort.get("dataset") or "nih"
    agreement = None
    if profile["reader_study_labels"]:
        agreement = reader_agreement(profile["reader_study_labels"])
        read[agreement["path"]] = Path(agreement["path"])

    identity = device_identity(layout.device_json, device, profile)
    claim = claim_wording(profile, profile["device_name"])
    comparisons = _comparisons(layout, read, identity.device_sha256)
    ttn = time_to_notification(run, read)
    date = issue_date(profile, run)
    population = derived(profile["population"], profile["study"]["sites"])
    study = profile["study"]
    plan = plan_study(profile["acceptance"], expected, prevalence, power=profile["power"],
                      factors=population["factors"], floor=study["subgroup_floor"],
                      replicates=study["simulation_replicates"], seed=study["seed"])
    left_out = left_out_images(train_summary, metrics)
    architecture = device.get("architecture", {}).get("spec", {}).get("arch")
    runtime = runtime_distributions(architecture)
    risk_data = load_risk_file(profile)
    hazards, risk_file = risk_data.hazards, risk_data.path
    requirements = load_requirements()

    figures = {f"eda_{k}": layout.eda / v for k, v in eda["figures"].items()}
    figures.update({k: layout.evaluation / v for k, v in metrics["figures"].items()})
    for a in assessments:
        figures.update({f"assess_{a['name']}_{k}": layout.assessment(a["name"]) / v
                        for k, v in (a.get("figures") or {}).items()})
    context: dict[str, Any] = {
        "profile": profile,
        "synthetic": synthetic,
        "dataset": dataset,
        "dataset_name": {"nih": "NIH ChestX-ray14", "pediatric": "Pediatric chest X-ray (Kermany et al.)",
                         "synthetic": "synthetic NIH-format phantoms (cxr-device synth)"}.get(dataset, dataset),
        "reference_standard": reference_standard(dataset, cohort),
        "run": {"path": str(run.resolve()), "name": run.name},
        "cohort": cohort,
        "eda": eda,
        "layers": layers,
        "weights": weights_origin(layers),
        "config": config,
        "history": history,
        "best_epoch": train_summary.get("best_epoch"),
        "train_summary": train_summary,
        "metrics": metrics,
        "calibration": metrics.get("calibration") or {"method": "none"},
        "device": device,
        "identity": identity.as_dict(),
        "issue_date": {"text": date.text, "source": date.source},
        "controls": controls(profile, date),
        "guidance_map": guidance_map(),
        "rules": [{"id": r.id, "attributes": " or ".join(r.attributes), "expected": r.expected(),
                   "severity": r.severity, "message": r.message} for r in rules.rules],
        "rules_set": rules,
        "rules_name": rules.name,
        "population": population,
        "development_images": development_images(cohort_csv),
        "left_out": left_out,
        "assessment_files": assessments,
        "comparisons": comparisons,
        "acceptance_methods": ACCEPTANCE_METHODS,
        "sample_size": plan.as_dict(),
        "prevalence_source": "profile: expected_prevalence" if profile["expected_prevalence"]
        else "evaluation/metrics.json: splits.test.prevalence",
        "expected": expected,
        "agreement": agreement,
        "soup": [{"name": d.name, "version": d.version, "licence": d.licence, "purpose": d.purpose,
                  "constraint": d.constraint} for d in runtime],
        "runtime": runtime,
        "sbom_name": SBOM_NAME,
        "trace": junit_rows,
        "requirements": requirements,
        "risk_file": "fda_submission/risk/default_risks.yaml (package default)" if not profile["risks"]["file"]
        else _relative(Path(risk_file), run),
        "hazards": hazards,
        "risk_problems": verify_risks(hazards, {r["id"] for r in requirements}, junit_rows, risk_data.plan),
        "claim": claim,
        "rule_counts": {"error": sum(r.severity == "error" for r in rules.rules),
                        "warning": sum(r.severity == "warning" for r in rules.rules)},
        "trace_summary": {"verified": sum(r["status"] == "verified" for r in junit_rows or []),
                          "total": len(junit_rows or [])},
        "soup_licences": soup_licences(runtime),
        "ttn": ttn,
        "flag_limits": flag_limits(profile, plan.prevalence, assessments, metrics),
        "classification": classification(profile, claim),
        "todo": todo,
        "value_or_todo": value_or_todo,
        "figures": {k: v for k, v in figures.items() if v.is_file()},
        "provenance": [{"file": _relative(p, run), "sha256": sha256_file(p)} for _, p in sorted(read.items())
                       if p.is_file()],
    }
    context["sources"] = sources
    # --- risk management (RMF) and usability (HF): fda_submission/risk.py, fda_submission/usability/ ---
    from .usability import usability_record

    context["risk_management"] = risk_management(risk_data, metrics, assessments, prevalence,
                                                 context["prevalence_source"], context["risk_problems"],
                                                 junit_rows is not None)
    context["usability"] = usability_record(layout.bundle)
    # --- end risk management and usability ------------------------------------------------------
    add_texts(context)
    # --- software documentation (SW) and cybersecurity (CYB): fda_submission/software, /security ---
    from .security.documentation import cybersecurity
    from .software.documentation import software_documentation

    context["software"] = software_documentation(context, junit)
    context["security"] = cybersecurity(context, junit)
    # --- end software documentation and cybersecurity ---------------------------------------------
    return context


GUIDANCE_MAP = "guidance_map.yaml"


def guidance_map() -> list[dict]:
    """Where each element FDA's guidances ask for is in the package (``guidance_map.yaml``)."""
    from importlib import resources

    from cxr_device.yaml_io import load_yaml

    return load_yaml(Path(str(resources.files("fda_submission") / GUIDANCE_MAP)), "guidance map")


def planning_values(test: dict) -> dict[str, float]:
    """The values the plan assumes: internal estimates are optimistic, so the lower bound of the
    interval the assessment itself will judge by - exact (Clopper-Pearson) for sensitivity and
    specificity, DeLong (Newcombe's where DeLong's is degenerate) for AUROC - never a bootstrap
    bound; the estimate itself only when no bound exists."""
    def lower(metric: str) -> float:
        entry = test[metric]
        bound = (entry.get("interval") or {}).get("ci95") if metric == "auroc" else entry.get("clopper_pearson")
        bound = bound or entry.get("ci95")
        return bound[0] if bound and bound[0] is not None else entry["value"]

    return {m: lower(m) for m in ("auroc", "sensitivity", "specificity")}


def add_texts(context: dict) -> dict:
    """The texts built from the context's numbers (the assessments' views, limitations, known
    issues, risk rows, captions, the calibration and decisions): built again on the traced
    context, so that their numbers are traced too."""
    context["assessments"] = [ChainMap(wording.assessment_view(a), a) for a in context["assessment_files"]]
    context["intended_assessments"] = [a for a in context["assessments"] if a.get("accepted")
                                       and a.get("in_population") is not False and not a.get("development")]
    context["outside_assessments"] = [a for a in context["assessments"] if a.get("in_population") is False]
    context["limitations"] = limitations(context)
    context["known_issues"] = known_issues(context)
    context["risks"] = risk_rows(context["hazards"], context["trace"], context)
    context["captions"] = wording.captions(context)
    context["eda_figures"] = wording.eda_figures(context)
    context["calibration_text"] = wording.calibration_text(context)
    context["decisions"] = wording.decisions(context)
    context["decisions_text"] = wording.decisions_text(context)
    context["decisions_on_internal"] = wording.decisions_on_internal(context)
    context["monitoring"] = wording.monitoring(context)
    context["dicom_evidence"] = wording.dicom_evidence(context)
    context["inference_text"] = wording.inference_text(context)
    return context


def _assessments(layout: RunLayout, read: dict[str, Path], ages: dict) -> list[dict]:
    """Every ``assessment/<name>/assessment.json`` of the run, by name, with ``population_fit``:
    how many of its inputs have a recorded age inside the intended population's range
    (from its ``predictions.csv``)."""
    out = []
    root = layout.assessment_root
    for path in sorted(root.glob(f"*/{ASSESSMENT}")) if root.is_dir() else []:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CxrDeviceError(f"{path}: not a readable assessment ({err}); re-run `cxr-device assess`") from None
        read[str(path)] = path
        document["file"] = f"assessment/{path.parent.name}/{ASSESSMENT}"
        document["folder"] = path.parent.name
        fit = document["population_fit"] = _population_fit(path.parent / PREDICTIONS, ages, read)
        # True: every recorded age inside the population; False: some outside; None: no age recorded
        document["in_population"] = None if not fit or not fit["n_with_age"] else fit["n_inside"] == fit["n_with_age"]
        out.append(document)
    return out


def _comparisons(layout: RunLayout, read: dict[str, Path], device_sha256: str) -> list[dict]:
    """Every ``comparison/<set>/comparison.json`` of the run (``cxr-device compare``), as the PCCP
    cites it, with ``file`` and ``this_device`` (is the modified device the one the documents describe)."""
    out = []
    root = layout.comparison_root
    for path in sorted(root.glob(f"*/{COMPARISON}")) if root.is_dir() else []:
        try:
            c = json.loads(path.read_text())
            read[str(path)] = path
            c.update(file=f"comparison/{path.parent.name}/{COMPARISON}", folder=path.parent.name,
                     this_device=c["devices"]["candidate"]["device_json_sha256"] == device_sha256)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CxrDeviceError(f"{path}: not a readable comparison ({type(err).__name__}: {err}); re-run "
                                 "`cxr-device compare`") from None
        out.append(c)
    return out


#: Where a run keeps the node's time-to-notification benchmark (bench/bench_ttn.py --out RUN).
TTN_FILE = "ttn/ttn.json"
#: What the documents print of it: the context key "ttn" (the validation plan and the 510(k) summary).
TTN_NUMBERS = ("arrival_rate_per_min", "p50_s", "p95_s", "max_s", "max_sustained_per_min")
TTN_TEXTS = ("machine", "sender", "images_per_study", "pixel_side")


def time_to_notification(run: Path, read: dict[str, Path]) -> dict | None:
    """``ttn/ttn.json`` of the run (bench/bench_ttn.py), with ``file`` (where it is, for the
    documents to cite); None when the run has none. A file the documents cannot quote stops with
    the file and the field."""
    path = run / TTN_FILE
    if not path.is_file():
        return None
    remedy = f"run `python bench/bench_ttn.py --out {run}` again"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CxrDeviceError(f"{path}: not a readable benchmark ({type(err).__name__}: {str(err)[:120]}); {remedy}") \
            from None
    if not isinstance(document, dict):
        raise CxrDeviceError(f"{path}: expected a JSON object; {remedy}")
    for key in TTN_NUMBERS:
        value = document.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            raise CxrDeviceError(f"{path}: {key}: expected a non-negative number, got {str(value)[:40]!r}; {remedy}")
    for key in TTN_TEXTS:
        if not isinstance(document.get(key), (str, int)) or str(document[key]).strip() == "":
            raise CxrDeviceError(f"{path}: {key}: expected a text, got {str(document.get(key))[:40]!r}; {remedy}")
    if not document["p50_s"] <= document["p95_s"] <= document["max_s"]:
        raise CxrDeviceError(f"{path}: p50_s, p95_s, max_s: percentiles out of order ({document['p50_s']}, "
                             f"{document['p95_s']}, {document['max_s']}); {remedy}")
    read[str(path)] = path
    return {**document, "file": TTN_FILE}


def _population_fit(predictions: Path, ages: dict, read: dict[str, Path]) -> dict | None:
    """``{"n", "n_with_age", "n_inside"}`` of an assessment's inputs; None without predictions.csv."""
    if not predictions.is_file():
        return None
    read[str(predictions)] = predictions
    recorded = pd.read_csv(predictions, usecols=["age_years"])["age_years"].dropna()
    inside = recorded.between(ages["min"], ages["max"])  # as the input rules compare ages
    return {"n": int(len(pd.read_csv(predictions, usecols=["key"]))), "n_with_age": int(len(recorded)),
            "n_inside": int(inside.sum()), "file": f"assessment/{predictions.parent.name}/{PREDICTIONS}"}


def _relative(path: Path, run: Path) -> str:
    """A path as the reader of the documents should see it: relative to the run when inside it."""
    try:
        return str(path.resolve().relative_to(run.resolve()))
    except ValueError:
        return str(path)


def weights_origin(layers: dict) -> dict:
    """How training started, from the model's own record (layers.json ``weights.source``), and
    the words that fit it: a randomly initialised model is *trained*, a pretrained one *fine-tuned*."""
    source = str(layers.get("weights", {}).get("source", ""))
    kind = RANDOM if source.startswith("none") else IMAGENET if source.startswith("imagenet") else FILE
    trained = layers.get("fine_tuned", [])
    return {"source": source, "kind": kind, "pretrained": kind != RANDOM,
            "verb": "fine-tuned" if kind != RANDOM else "trained from random initialisation",
            "trained_column": "layers fine-tuned" if kind != RANDOM else "layers trained (from random initialisation)",
            "trained_layers": trained}


def reference_standard(dataset: str, cohort: dict) -> dict:
    """The reference standard of the development labels, in words the run backs, with the file."""
    if dataset == "synthetic":
        return {"text": "Labels are the synthetic generator's own: a positive phantom carries a simulated regional "
                        "opacity, a negative one does not. No person read these images; they stand in for data while "
                        "the pipeline is built and tested.", "source": "cohort/summary.json (synthetic)"}
    if dataset == "nih":
        return {"text": "Labels of NIH ChestX-ray14 were text-mined from the radiology reports by natural-language "
                        "processing (Wang et al., CVPR 2017); the authors estimate their accuracy at over 90%. They "
                        "are report-derived, not image re-reads: a finding named in the report counts even when it is "
                        "not visible, and findings the report omits are absent.",
                "source": "cohort/summary.json (dataset nih)"}
    if dataset == "pediatric":
        folder = Path(str(cohort.get("source", {}).get("path", ""))).name.lower()
        where = {"train": "These images are the dataset's training folder, re-split here by patient into training, "
                          "validation and test: the publication's check by a third expert applied to its own test set "
                          "only, so the internal test split of this run was graded by two experts.",
                 "test": "These images are the dataset's test folder, for which the publication reports a "
                         "third expert's check; no file of the run records it."}.get(folder, "Which folder of the publication these images come from is "
                                                           "not recorded: whether the third-expert check applies is "
                                                           "unknown, and it is not claimed.")
        return {"text": "Images of the pediatric pneumonia dataset (Kermany et al., Cell 2018) were graded by two "
                        "expert physicians after poor-quality films were removed; labels are image-level (normal / "
                        f"bacterial / viral pneumonia). {where}",
                "source": f"cohort/summary.json (dataset pediatric, source folder '{folder}')"}
    return {"text": "See the dataset's documentation: the run does not record how its labels were made.",
            "source": "cohort/summary.json"}


def classification(profile: dict, claim: dict) -> dict:
    """The proposed classification (the claim's regulation and product code), with markers for what
    the owner must confirm or fill."""
    c = profile["classification"]
    return {"regulation": claim["regulation"], "regulation_title": claim["regulation_title"],
            "product_code": claim["product_code"],
            "regulation_source": "profile: claim.regulation" if profile["claim"]["regulation"] else
            f"implied by the claim ({claim['name']})",
            "device_class": value_or_todo(c["device_class"], "classification.device_class", "device class"),
            "confirmed": c["confirmed"],
            "confirmation": "confirmed by the owner" if c["confirmed"] else
            todo("classification.confirmed", "the owner confirms the classification")}


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


def limitations(context: dict) -> list[dict]:
    """Conditions and inputs for which the device must not be used or performance is not
    established, each with the file (or profile key) it follows from."""
    out = []
    cohort, metrics, left_out = context["cohort"], context["metrics"], context["left_out"]
    population, profile = context["population"], context["profile"]

    def add(text: str, source: str) -> None:
        out.append({"text": text, "source": source})

    add(f"The device is intended only for {profile['population']['name']}, aged {population['age_text']}; it must "
        "not be used outside this population.", "profile: population")
    if context["synthetic"]:
        add("The model was trained and evaluated on synthetic phantoms: no clinical performance is claimed.",
            "cohort/summary.json")
    if left_out["n"]:
        where = ", ".join(f"{SPLIT_NAMES.get(s, s)} {n}" for s, n in left_out["by_split"].items())
        add(f"{left_out['n']} image(s) of the development data could not be decoded and were left out ({where}); "
            "the device refuses such inputs, and performance on them is not established.",
            "model/train_summary.json, evaluation/metrics.json")
    errors = [r for r in context["rules"] if r["severity"] == "error"]
    if errors:
        add(f"Inputs that fail any of the {context['rule_counts']['error']} error rules of the locked input rules are "
            "refused: " + "; ".join(f"{r['attributes']} {r['expected']}" for r in errors) + ".", "bundle/input_rules.yaml")
    ages = [s["age"] for s in cohort["splits"].values() if s["age"]["n"]]
    if ages:
        lo, hi = min(a["min"] for a in ages), max(a["max"] for a in ages)
        add(f"Performance was established on patients aged {lo:g} to {hi:g} years only.", "cohort/summary.json")
    else:
        add("The ages, sexes and view positions of the development data were not recorded: performance by age, sex "
            "and view is not established.", "cohort/summary.json")
    views = sorted({v for s in cohort["splits"].values() for v in s["view"] if v != "unknown"})
    if views:
        add(f"Training and validation images were {', '.join(views)} views only.", "cohort/summary.json")
    images = context["development_images"]
    if not images["dicom"]:
        kinds = ", ".join(f"{k} {v:,}" for k, v in images["formats"].items())
        add(f"The development images were not DICOM files ({kinds}): the input rules could not be applied to them, "
            "and performance on DICOM inputs rests on the standalone assessments.", "cohort/cohort.csv")
    if not context["assessments"]:
        add("No standalone assessment of the locked device exists: performance on data from any other source is not "
            "established, and the internal results below are not standalone evidence.", "assessment/ (none)")
    for row in metrics.get("subgroups", {}).get("test", []):
        if row["unstable"]:
            add(f"Performance in the subgroup {row['group']} {row['level']} is not established "
                f"({row['n_positive']} positive and {row['n_images'] - row['n_positive']} negative test images).",
                "evaluation/metrics.json")
    return out


def soup_licences(runtime) -> list[dict]:
    """The runtime's licences: how many distributions carry each, and what each constrains."""
    by_licence: dict[str, dict] = {}
    for d in runtime:
        row = by_licence.setdefault(d.licence, {"licence": d.licence, "n": 0, "constraint": d.constraint})
        row["n"] += 1
    return sorted(by_licence.values(), key=lambda r: (-r["n"], r["licence"]))


def flag_limits(profile: dict, prevalence: float, assessments: list[dict], metrics: dict) -> dict:
    """The share of studies the device is expected to flag at the intended prevalence, from the first
    standalone set of the intended population (else the internal test split), and its p-chart limits
    over the profile's review volume."""
    from validation.control_limits import flag_rate_limits

    evidence = [a for a in assessments if a.get("accepted") and a.get("in_population") is not False
                and not a.get("development")]
    basis = evidence[0]["accepted"] if evidence else metrics["splits"]["test"]
    where = f"the standalone set {evidence[0]['name']}" if evidence else "the internal test split"
    return flag_rate_limits(prevalence, basis["sensitivity"]["value"], basis["specificity"]["value"],
                            profile["postmarket"]["review_volume"], where)
