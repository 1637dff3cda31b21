"""``cxr-device evaluate``: a trained run -> honest, confidence-bounded claims and a locked bundle.

1. predict the validation and test splits (same cache and preprocessing as training): logits;
2. fit the calibration on validation only (Platt scaling by default; see
   :mod:`validation.calibration`), and report ECE and NLL before and after on both splits;
3. choose the threshold on validation only, on the calibrated probabilities, by the threshold
   policy (maximum F1 by default; :mod:`validation.threshold`), and apply it unchanged to test;
4. metrics per split with 95% patient-bootstrap intervals, and the closed-form ones beside them
   (Clopper-Pearson with ``k`` and ``n`` for sensitivity, specificity, PPV, NPV and accuracy;
   DeLong for AUROC, with Newcombe's score interval where DeLong's is degenerate); the
   operating-point table (every policy); subgroups (age bands, sex, view) on test;
5. figures; ``evaluation/predictions.csv`` and ``evaluation/metrics.json``;
6. lock the device - weights, calibration, threshold, input rules - in ``bundle/``.

An image that cannot be decoded is not scored; ``metrics.json`` counts it (``left_out``: the number,
the number per split, and each image with its split and reason; ``n_left_out`` in each split), and
``cxr-device evaluate`` exits 1.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cxr_device.cohort import read_cohort
from cxr_device.errors import CxrDeviceError
from cxr_device.findings import TARGET
from cxr_device.hashing import sha256_file
from cxr_device.provenance import producer
from cxr_device.run_layout import COHORT_CSV, RunLayout
from cxr_device.runtime.bundle import write_bundle
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
from .intervals import exact_intervals
from .metrics import confusion, finite, from_confusion
from .subgroups import subgroup_table
from .threshold import ThresholdPolicy, operating_thresholds

EVALUATED_SPLITS = ("val", "test")
PREDICTION_COLUMNS = ["image_id", "patient_id", "logit", "probability", "label", "split", "age_years", "sex", "view"]


def evaluate_run(run_dir: str | Path, n_bootstrap: int = 2000, seed: int = 0, target_sensitivity: float = 0.9,
                 rules: str | Path | None = None, progress: bool = True, calibration: str = "platt",
                 policy: ThresholdPolicy | None = None) -> dict:
    """Evaluate ``run_dir/model/best.pt``; write ``evaluation/`` and ``bundle/``; return metrics.json.

    ``calibration`` (platt | temperature | none) and ``policy`` (default: maximum F1) are fitted
    and chosen on the validation split only."""
    check_setting(Replicates, n_bootstrap, "bootstrap")
    check_setting(Seed, seed, "seed")
    check_setting(Proportion, target_sensitivity, "target_sensitivity")
    policy = policy or ThresholdPolicy()
    layout = RunLayout(run_dir)
    model, config, meta = load_trained(layout.root)
    cohort_dir = Path(meta.get("cohort", {}).get("dir") or layout.cohort)
    _, cohort_summary = read_cohort(cohort_dir)
    rules_file = Path(rules) if rules else default_rules_path()
    load_rules(rules_file)  # refuse a broken rules file before anything is written
    device = resolve_device(config.device)
    model.to(device)

    parts = []
    datasets = split_datasets(cohort_dir, config, EVALUATED_SPLITS)
    left_out = left_out_record(pd.concat([datasets[s].left_out for s in EVALUATED_SPLITS], ignore_index=True),
                               EVALUATED_SPLITS)
    for split in tqdm(EVALUATED_SPLITS, desc="predict", disable=not progress):
        data = datasets[split]
        rows = data.rows
        if rows.empty or rows[TARGET].nunique() < 2:
            raise CxrDeviceError(f"the cohort's {split} split needs images of both classes to be evaluated "
                                 f"({len(rows)} readable images, {int(rows[TARGET].sum()) if len(rows) else 0} "
                                 f"positive; {len(data.left_out)} could not be decoded)")
        parts.append(rows.assign(logit=predict_logits(model, data.dataset, device, config), label=rows[TARGET],
                                 split=split))
    predictions = pd.concat(parts, ignore_index=True)
    val_part = predictions[predictions["split"] == "val"]
    fitted = cal.fit_calibration(val_part["logit"].to_numpy(), val_part["label"].to_numpy(), calibration)
    predictions = predictions.assign(probability=fitted.probabilities(predictions["logit"].to_numpy()))
    predictions = predictions[PREDICTION_COLUMNS]
    val, test = (predictions[predictions["split"] == s] for s in ("val", "test"))
    arrays = {s: (p["probability"].to_numpy(), p["label"].to_numpy()) for s, p in (("val", val), ("test", test))}

    thresholds = operating_thresholds(*arrays["val"], target_sensitivity, policy)  # validation labels only
    threshold = thresholds[policy.name][1]
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
         "locked": rule == policy.name, **{name: from_confusion(confusion(*arrays[name], t)) for name in arrays}}
        for rule, (chosen, t) in thresholds.items()
    ]
    val_at_threshold = from_confusion(confusion(*arrays["val"], threshold))
    subgroups = subgroup_table(test, threshold, n_bootstrap, seed)
    is_nih = cohort_summary.get("dataset") == "nih" and not cohort_summary.get("synthetic")
    out = layout.evaluation
    out.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(layout.predictions, index=False, lineterminator="\n")  # full precision: decisions
    # at the threshold must be reproducible from this file
    figures = _figures(out, arrays, splits, roc_band, threshold, val_at_threshold["f1"], is_nih, layout.model,
                       policy.name)
    metrics = {
        "threshold": {"value": threshold, "rule": policy.name, "description": policy.description(),
                      "policy": {"rule": policy.rule, "target": policy.target, "tolerance": policy.tolerance},
                      "scale": "calibrated probability" if fitted.method != "none" else "probability",
                      "raw_threshold": fitted.raw_threshold(threshold),
                      "validation": {"f1": val_at_threshold["f1"], "precision": val_at_threshold["ppv"],
                                     "recall": val_at_threshold["sensitivity"]}},
        "calibration": {**fitted.as_dict(), "fitted_on": "val",
                        "training_loss": {"imbalance": config.imbalance},
                        **{name: {k: splits[name]["calibration"][k] for k in ("before", "after")}
                           for name in EVALUATED_SPLITS}},
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
                                            "calibration": calibration, "threshold_policy": policy.name}),
    }
    metrics = finite(metrics)
    layout.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    write_bundle(layout.bundle, model.cpu(), config.preprocessing,
                 threshold={**metrics["threshold"], "test": _summary(splits["test"])},
                 rules_file=rules_file, cohort_csv=cohort_dir / COHORT_CSV,
                 extra={"evaluation": {"metrics_json_sha256": sha256_file(layout.metrics)},
                        "synthetic": metrics["synthetic"]}, calibration=fitted)
    return metrics


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
