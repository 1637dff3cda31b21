"""``cxr-device evaluate``: a trained run -> honest, confidence-bounded claims and a locked bundle.

1. predict the validation and test splits (same cache and preprocessing as training): the
   device's logits - with an ensemble (``members``) and test-time views (``tta``), the mean over
   members and views, as the locked device computes them;
2. fit the calibration (Platt scaling by default; see :mod:`validation.calibration`) on the
   **external development sets** when the run names any (:mod:`validation.development`: scored
   through the device's own path), else on the validation split; report ECE and NLL before and
   after on both splits; with an ``intended_prevalence``, re-weight it to that prevalence (the
   offset moves by the difference of the log-odds; the threshold moves with it, so every decision
   is unchanged);
3. choose the threshold on the same data, on the calibrated probabilities, by the threshold
   policy (maximum F1 by default; :mod:`validation.threshold`), and apply it unchanged to the
   internal splits; record what the choice costs there (``transfer``);
4. metrics per split with 95% patient-bootstrap intervals, and the closed-form ones beside them
   (Clopper-Pearson with ``k`` and ``n`` for sensitivity, specificity, PPV, NPV and accuracy;
   DeLong for AUROC, with Newcombe's score interval where DeLong's is degenerate); the
   operating-point table (every policy); subgroups (age bands, sex, view) on test;
5. figures; ``evaluation/predictions.csv`` and ``evaluation/metrics.json`` - with ``decisions``:
   which data made which decision;
6. lock the device - weights (every member), views, calibration, threshold, input rules and the
   reference distribution of its scores (for ``monitor``) - in ``bundle/``.

An image that cannot be decoded is not scored; ``metrics.json`` counts it (``left_out``: the number,
the number per split, and each image with its split and reason; ``n_left_out`` in each split), and
``cxr-device evaluate`` exits 1.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cxr_device.cohort import read_cohort
from cxr_device.errors import CxrDeviceError
from cxr_device.findings import TARGET
from cxr_device.hashing import sha256_file
from cxr_device.provenance import producer
from cxr_device.run_layout import COHORT_CSV, RunLayout
from cxr_device.preprocessing import VIEW_SETS
from cxr_device.runtime.bundle import load_bundle, write_bundle
from cxr_device.runtime.calibration import Calibration, logit, sigmoid
from cxr_device.runtime.input_rules import default_rules_path, load_rules
from cxr_device.training import (
    left_out_record,
    load_trained,
    predict_logits,
    resolve_device,
    split_datasets,
)
from cxr_device.validated import Proportion, Replicates, Seed, check_setting

from . import calibration as cal
from . import figures as fig
from .bootstrap import bootstrap
from .development import decisions, pooled, score_development
from .intervals import exact_intervals
from .metrics import auroc, confusion, finite, from_confusion, ranking
from .subgroups import subgroup_table
from .threshold import ThresholdPolicy, operating_thresholds

EVALUATED_SPLITS = ("val", "test")
PREDICTION_COLUMNS = ["image_id", "patient_id", "logit", "probability", "label", "split", "age_years", "sex", "view"]


def evaluate_run(run_dir: str | Path, n_bootstrap: int = 2000, seed: int = 0, target_sensitivity: float = 0.9,
                 rules: str | Path | None = None, progress: bool = True, calibration: str = "platt",
                 policy: ThresholdPolicy | None = None, tta: str = "none", members: list[str | Path] = (),
                 development: list[dict] = (), intended_prevalence: float | None = None,
                 selection: dict | None = None) -> dict:
    """Evaluate ``run_dir/model/best.pt`` (with the ensemble's ``members``, other run folders, and
    the ``tta`` views); write ``evaluation/`` and ``bundle/``; return metrics.json.

    ``calibration`` (platt | temperature | none) and ``policy`` (default: maximum F1) are fitted
    and chosen on the ``development`` sets when given, else on the validation split only;
    ``selection`` (the recipe study's procedure) is recorded with the decisions."""
    check_setting(Replicates, n_bootstrap, "bootstrap")
    check_setting(Seed, seed, "seed")
    check_setting(Proportion, target_sensitivity, "target_sensitivity")
    if intended_prevalence is not None:
        check_setting(Proportion, intended_prevalence, "intended_prevalence")
    policy = policy or ThresholdPolicy()
    views = VIEW_SETS[tta]
    layout = RunLayout(run_dir)
    model, config, meta = load_trained(layout.root)
    models = [model] + [load_trained(member)[0] for member in members]
    cohort_dir = Path(meta.get("cohort", {}).get("dir") or layout.cohort)
    _, cohort_summary = read_cohort(cohort_dir)
    rules_file = Path(rules) if rules else default_rules_path()
    load_rules(rules_file)  # refuse a broken rules file before anything is written
    device = resolve_device(config.device)
    models = [m.to(device) for m in models]

    parts = []
    datasets = split_datasets(cohort_dir, config, EVALUATED_SPLITS, views=views if tta != "none" else None)
    left_out = left_out_record(pd.concat([datasets[s].left_out for s in EVALUATED_SPLITS], ignore_index=True),
                               EVALUATED_SPLITS)
    for split in tqdm(EVALUATED_SPLITS, desc="predict", disable=not progress):
        data = datasets[split]
        rows = data.rows
        if rows.empty or rows[TARGET].nunique() < 2:
            raise CxrDeviceError(f"the cohort's {split} split needs images of both classes to be evaluated "
                                 f"({len(rows)} readable images, {int(rows[TARGET].sum()) if len(rows) else 0} "
                                 f"positive; {len(data.left_out)} could not be decoded)")
        parts.append(rows.assign(logit=predict_logits(models, data.dataset, device, config), label=rows[TARGET],
                                 split=split))
    predictions = pd.concat(parts, ignore_index=True)
    val_part = predictions[predictions["split"] == "val"]
    dev_scores = _score_development(models, config, views, rules_file, cohort_dir, development, progress)
    if dev_scores:
        fit_logits, fit_labels = pooled(dev_scores)
        fitted_on = ", ".join(d.name for d in dev_scores)
    else:
        fit_logits, fit_labels, fitted_on = val_part["logit"].to_numpy(), val_part["label"].to_numpy(), "val"
    fitted = cal.fit_calibration(fit_logits, fit_labels, calibration)
    # the threshold: chosen on the same data as the calibration, on its calibrated probabilities
    thresholds = operating_thresholds(fitted.probabilities(fit_logits), fit_labels, target_sensitivity, policy)
    internal = operating_thresholds(fitted.probabilities(val_part["logit"].to_numpy()), val_part["label"].to_numpy(),
                                    target_sensitivity, policy)[policy.name][1] if dev_scores else None
    fitted, thresholds, internal, prevalence = _reweighted(fitted, thresholds, internal, fit_labels,
                                                           intended_prevalence)
    threshold = thresholds[policy.name][1]
    predictions = predictions.assign(probability=fitted.probabilities(predictions["logit"].to_numpy()))
    predictions = predictions[PREDICTION_COLUMNS]
    val, test = (predictions[predictions["split"] == s] for s in ("val", "test"))
    arrays = {s: (p["probability"].to_numpy(), p["label"].to_numpy()) for s, p in (("val", val), ("test", test))}
    fit_probs = fitted.probabilities(fit_logits)
    splits = {}
    for name, part in (("val", val), ("test", test)):
        probs, labels = arrays[name]
        stats = bootstrap(probs, labels, part["patient_id"].to_numpy(), threshold, n_bootstrap, seed,
                          roc_band=name == "test")
        counts = {k: int(v) for k, v in confusion(probs, labels, threshold).items()}
        for metric, closed_form in exact_intervals(counts, probs, labels).items():
            stats[metric] = {**stats[metric], **closed_form}
        splits[name] = {"n_images": len(part), "n_left_out": left_out["by_split"][name],
                        "n_patients": int(part["patient_id"].nunique()),
                        "n_positive": int(labels.sum()), "prevalence": float(labels.mean()),
                        "confusion": counts,
                        "calibration": cal.summary(part["logit"].to_numpy(), labels, fitted), **stats}
    roc_band = splits["test"].pop("roc_band")
    operating_points = [
        {"rule": rule, "description": chosen.description(), "threshold": t, "raw_threshold": fitted.raw_threshold(t),
         "locked": rule == policy.name, **{name: from_confusion(confusion(*arrays[name], t)) for name in arrays},
         **({"development": from_confusion(confusion(fit_probs, fit_labels, t))} if dev_scores else {})}
        for rule, (chosen, t) in thresholds.items()
    ]
    val_at_threshold = from_confusion(confusion(*arrays["val"], threshold))
    chosen_at = from_confusion(confusion(fit_probs, fit_labels, threshold))
    subgroups = subgroup_table(test, threshold, n_bootstrap, seed)
    is_nih = cohort_summary.get("dataset") == "nih" and not cohort_summary.get("synthetic")
    out = layout.evaluation
    out.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(layout.predictions, index=False, lineterminator="\n")  # full precision: decisions
    # at the threshold must be reproducible from this file
    figures = _figures(out, arrays, splits, roc_band, threshold, val_at_threshold["f1"], is_nih, layout.model,
                       policy.name)
    description = policy.description(f"the development set(s) {fitted_on}" if dev_scores else "the validation split")
    metrics = {
        "threshold": {"value": threshold, "rule": policy.name, "description": description, "chosen_on": fitted_on,
                      "policy": {"rule": policy.rule, "target": policy.target, "tolerance": policy.tolerance},
                      "scale": "calibrated probability" if fitted.method != "none" else "probability",
                      "raw_threshold": fitted.raw_threshold(threshold),
                      "validation": {"f1": val_at_threshold["f1"], "precision": val_at_threshold["ppv"],
                                     "recall": val_at_threshold["sensitivity"]},
                      "chosen_on_metrics": {k: chosen_at[k] for k in ("f1", "ppv", "sensitivity", "specificity",
                                                                      "accuracy")}},
        "calibration": {**fitted.as_dict(), "fitted_on": fitted_on, "prevalence": prevalence,
                        "training_loss": {"imbalance": config.imbalance},
                        **{name: {k: splits[name]["calibration"][k] for k in ("before", "after")}
                           for name in EVALUATED_SPLITS}},
        "inference": {"members": len(models), "views": list(views), "tta": tta},
        "decisions": decisions(fitted_on, f"{fitted.method} scaling" + (" re-weighted to the intended prevalence"
                                                                          if prevalence["adjusted"] else ""),
                               description, selection),
        "decision_procedure": selection,
        "development_sets": [_development_summary(d, fitted, threshold) for d in dev_scores],
        "transfer": _transfer(internal, threshold, arrays) if dev_scores else None,
        "operating_points": operating_points,
        "splits": splits,
        "left_out": left_out,
        "subgroups": {"test": subgroups,
                      "note": None if subgroups else "the dataset records no age, sex or view position"},
        "bootstrap": {"n": n_bootstrap, "seed": seed, "unit": "patient", "interval": "percentile 95%"},
        "reference": {"radiologist_f1": fig.RADIOLOGIST_F1,
                      "source": "CheXNet reader study (Rajpurkar et al., 2017), NIH ChestX-ray14 pneumonia"}
        if is_nih else None,
        "figures": figures,
        "model": {"checkpoint": meta["checkpoint"], "epoch": meta["epoch"], "architecture": config.model.arch},
        "inputs": {"cohort_csv_sha256": sha256_file(cohort_dir / COHORT_CSV),
                   "checkpoint_sha256": sha256_file(layout.checkpoint(meta["checkpoint"])),
                   "predictions_csv_sha256": sha256_file(layout.predictions)},
        "synthetic": bool(cohort_summary.get("synthetic")),
        "produced_by": producer("evaluate", {"bootstrap": n_bootstrap, "seed": seed,
                                            "target_sensitivity": target_sensitivity, "rules": str(rules_file),
                                            "calibration": calibration, "threshold_policy": policy.name,
                                            "tta": tta, "members": [str(m) for m in members],
                                            "development": [d["name"] for d in development],
                                            "intended_prevalence": intended_prevalence}),
    }
    metrics = finite(metrics)
    layout.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    reference = {"source": fitted_on, "probabilities": [round(float(p), 6) for p in sorted(fit_probs)]}
    write_bundle(layout.bundle, [m.cpu() for m in models], config.preprocessing,
                 threshold={**metrics["threshold"], "test": _summary(splits["test"])},
                 rules_file=rules_file, cohort_csv=cohort_dir / COHORT_CSV,
                 extra={"evaluation": {"metrics_json_sha256": sha256_file(layout.metrics)},
                        "synthetic": metrics["synthetic"], "reference_scores": reference},
                 calibration=fitted, views=views)
    return metrics


def _score_development(models: list, config, views: tuple[str, ...], rules_file: Path, cohort_dir: Path,
                       development: list[dict], progress: bool) -> list:
    """The development sets scored through the device's own path: a provisional bundle of the
    final weights and views (no calibration, a placeholder threshold), in a temporary folder."""
    if not development:
        return []
    with tempfile.TemporaryDirectory(prefix="cxr-device-provisional-") as scratch:
        folder = write_bundle(Path(scratch) / "bundle", [m.cpu() for m in models], config.preprocessing,
                              threshold={"value": 0.5, "rule": "provisional: logits only"}, rules_file=rules_file,
                              cohort_csv=cohort_dir / COHORT_CSV, views=views)
        return score_development(load_bundle(folder, environment_key=False), development, progress)


def _reweighted(fitted: Calibration, thresholds: dict, internal: float | None, labels, intended: float | None):
    """The calibration re-weighted to the intended prevalence (offset + the log-odds difference),
    the thresholds moved with it (every decision unchanged), and the record of what was done."""
    fit_prevalence = float(np.mean(labels))
    record = {"fitted": fit_prevalence, "intended": intended, "adjusted": False, "offset_shift": None}
    if intended is None or fitted.method == "none" or not 0 < fit_prevalence < 1:
        return fitted, thresholds, internal, record
    shift = float(logit(intended) - logit(fit_prevalence))

    def move(t: float) -> float:
        return float(sigmoid(np.array([logit(t) + shift]))[0])

    moved = {rule: (chosen, move(t)) for rule, (chosen, t) in thresholds.items()}
    adjusted = Calibration(fitted.method, fitted.slope, fitted.offset + shift)
    return adjusted, moved, None if internal is None else move(internal), {**record, "adjusted": True,
                                                                           "offset_shift": shift}


def _development_summary(scores, fitted: Calibration, threshold: float) -> dict:
    """A development set at the locked calibration and threshold: counts, AUROC, the operating point."""
    accepted = scores.accepted
    probs = fitted.probabilities(accepted["logit"].to_numpy(dtype=np.float64))
    labels = accepted["label"].to_numpy()
    both = 0 < labels.sum() < len(labels)
    return {"name": scores.name, "source": scores.description, "n_labelled": scores.n_labelled,
            "n_excluded": scores.n_excluded, "n_scored": int(len(accepted)), "n_positive": int(labels.sum()),
            "auroc": auroc(ranking(probs, labels)) if both else None,
            "at_threshold": from_confusion(confusion(probs, labels, threshold)), "not_scored": scores.not_scored}


def _transfer(internal: float | None, locked: float, arrays: dict) -> dict:
    """What the development-set threshold costs on the internal splits: each split at the locked
    threshold and at the one the same policy picks on the internal validation split."""
    return {"internal_choice": internal, "locked": locked,
            **{name: {"at_locked": from_confusion(confusion(*arrays[name], locked)),
                      "at_internal_choice": from_confusion(confusion(*arrays[name], internal))}
               for name in arrays}}


def _summary(split: dict) -> dict:
    return {m: split[m]["value"] for m in ("auroc", "sensitivity", "specificity", "f1")}


def _figures(out: Path, arrays: dict, splits: dict, band, threshold: float, chosen_f1: float, is_nih: bool,
             model_dir: Path, rule: str) -> dict:
    made = {}
    fig.plot_roc({s: (*arrays[s], splits[s]["auroc"]["value"]) for s in arrays}, band, threshold, out / fig.FIGURES["roc"])
    fig.plot_pr({s: (*arrays[s], splits[s]["average_precision"]["value"]) for s in arrays}, threshold, chosen_f1,
                out / fig.FIGURES["pr"], fig.RADIOLOGIST_F1 if is_nih else None)
    fig.plot_threshold(*arrays["val"], threshold, out / fig.FIGURES["threshold"], rule)
    fig.plot_confusion(*arrays["test"], threshold, out / fig.FIGURES["confusion"])
    fig.plot_calibration({f"{fig.NAMES[s]}, {stage}": splits[s]["calibration"][key]["reliability"]
                          for s in arrays for stage, key in (("before calibration", "before"),
                                                             ("after", "after"))}, out / fig.FIGURES["calibration"])
    made.update({k: v for k, v in fig.FIGURES.items() if k != "training"})
    if fig.copy_training_curves(model_dir, out):
        made["training"] = fig.FIGURES["training"]
    return made
