"""Sentences and captions the documents build from the run's numbers.

Each function reads the (traced) context, so every number it writes is traced to its file
(:mod:`fda_submission.tracing`); none is typed. Figure captions are written from the same values
the figures were drawn from (the AUROC of a curve, the threshold of a marked point, the sizes of
the sets), so a caption cannot describe another figure.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .tracing import TracedStr

SPLIT_WORDS = {"val": "the internal validation split", "test": "the internal test split",
               "train": "the internal training split"}
EDA_CAPTIONS = {"prevalence": "Pneumonia prevalence by split", "images_per_patient": "Images per patient",
                "pixel_intensity": "Pixel intensity distribution by class", "age_by_class": "Age distribution by class",
                "sex_view_by_class": "Sex and view position by class",
                "cooccurrence": "Findings co-occurring with pneumonia", "findings_per_image": "Findings per image"}


def made_on(name: Any) -> str:
    """How the documents name the data a decision was made on."""
    text = str(name or "")
    return SPLIT_WORDS.get(text, f"the external development set {text}" if text else "not recorded")


def calibration_text(ctx: dict) -> str:
    """What the calibration is, what it was fitted on, and what it does and does not change."""
    cal = ctx["calibration"]
    if cal.get("method", "none") == "none":
        return ("The probability of pneumonia is the sigmoid of the model's logit; no calibration was fitted, so a "
                "probability is a score, not a frequency.")
    fitted = made_on(cal.get("fitted_on"))
    text = (f"The probability of pneumonia is sigmoid(a x logit + b) with {cal['method']} scaling: a = "
            f"{cal['slope']:.4g} and b = {cal['offset']:.4g}, fitted by maximum likelihood on {fitted}. The map is "
            "monotone, so it changes probabilities, never the order of the images: AUROC and every decision at a "
            "given rank are unchanged.")
    if "val" in cal and "test" in cal:
        text += (f" Expected calibration error (ten equal-width bins): {cal['val']['before']['ece']:.3f} before and "
                 f"{cal['val']['after']['ece']:.3f} after on the validation split, {cal['test']['before']['ece']:.3f} "
                 f"and {cal['test']['after']['ece']:.3f} on the test split.")
    prevalence = cal.get("prevalence")
    if prevalence and prevalence.get("fitted") is not None:
        fit, intended = prevalence["fitted"], prevalence.get("intended")
        if prevalence.get("adjusted"):
            text += (f" The data it was fitted on had a pneumonia prevalence of {100 * fit:.1f}%; the device's "
                     f"intended-use prevalence is {100 * intended:.1f}%, so the offset was moved by the difference of "
                     f"their log-odds ({prevalence['offset_shift']:+.3f}) and the threshold with it: the probabilities "
                     "are calibrated to the intended prevalence and every decision is unchanged.")
        elif intended is not None:
            text += (f" The data it was fitted on had a pneumonia prevalence of {100 * fit:.1f}%, the intended use "
                     f"{100 * intended:.1f}%: probabilities are calibrated to the former, and at the intended "
                     "prevalence a probability overstates the risk when the development prevalence is higher (PPV "
                     "at the intended prevalence is stated with the standalone results).")
    return text


def decisions(ctx: dict) -> list[dict]:
    """Which data made which decision (``metrics.json: decisions``, else what evaluate did)."""
    recorded = ctx["metrics"].get("decisions")
    if recorded:
        return [{"decision": d["decision"], "made_on": made_on(d["made_on"]), "how": d["how"]} for d in recorded]
    t, cal = ctx["metrics"]["threshold"], ctx["calibration"]
    return [
        {"decision": "recipe (architecture, augmentation, schedule)", "made_on": "not recorded by this run",
         "how": "the run's configuration"},
        {"decision": "best epoch", "made_on": SPLIT_WORDS["val"], "how": "highest validation AUROC"},
        {"decision": "calibration", "made_on": made_on(cal.get("fitted_on")) if cal.get("method", "none") != "none"
         else "none", "how": f"{cal.get('method', 'none')} scaling"},
        {"decision": "threshold", "made_on": made_on(t.get("chosen_on", "val")), "how": t["description"]},
    ]


def decisions_text(ctx: dict) -> str:
    """The decision procedure in one paragraph."""
    recorded = ctx["metrics"].get("decision_procedure")
    if recorded:
        where = f" ({recorded['declared_in']})" if recorded.get("declared_in") else ""
        return (f"Candidates, each declared before it was scored{where}: {', '.join(recorded['candidates'])}; "
                f"chosen: {recorded['chosen']}. Selection metric: {recorded['metric']}; tie-break: "
                f"{recorded['tie_break']}. The internal test split made no decision: it stays a consistency check.")
    return ("This run records no external development set: the epoch, the calibration and the threshold were chosen "
            "on the internal validation split, which comes from the training folder; the internal test split made no "
            "decision.")


def decisions_on_internal(ctx: dict) -> bool:
    """Whether any decision was made on the internal test split (never, by design)."""
    return any(str(d.get("made_on")) == "test" for d in ctx["metrics"].get("decisions") or [])


def captions(ctx: dict) -> dict[str, str]:
    """The caption of every evaluation figure, from the values the figure shows."""
    m, t = ctx["metrics"], ctx["metrics"]["threshold"]
    val, test = m["splits"]["val"], m["splits"]["test"]
    out = {
        "roc": f"ROC curves of the internal validation (AUROC {val['auroc']['value']:.3f}) and test (AUROC "
               f"{test['auroc']['value']:.3f}) splits, with the test split's 95% patient-bootstrap band; the dots "
               f"mark the locked threshold {t['value']:.3g}",
        "pr": f"Precision-recall curves of the internal validation (AP {val['average_precision']['value']:.3f}) and "
              f"test (AP {test['average_precision']['value']:.3f}) splits, with lines of equal F1; the dots mark the "
              f"locked threshold {t['value']:.3g}",
        "threshold": f"F1, precision and recall on the internal validation split against the threshold; the dashed "
                     f"line is the locked threshold {t['value']:.3g}",
        "confusion": f"Confusion matrix of the internal test split ({test['n_images']:,} images) at the locked "
                     f"threshold {t['value']:.3g}",
        "training": "Training and validation loss, validation AUROC and average precision per epoch",
    }
    cal = ctx["calibration"]
    out["calibration"] = ("Reliability of the probabilities (ten equal-width bins) on the internal validation and "
                          "test splits, before and after calibration" if cal.get("method", "none") != "none" else
                          "Reliability of the probabilities (ten equal-width bins) on the internal splits")
    return out


def eda_figures(ctx: dict) -> list[tuple[str, str]]:
    """(figure key, caption) of every exploratory figure the run made, in its order."""
    return [(f"eda_{key}", EDA_CAPTIONS.get(str(key), str(key).replace("_", " ").capitalize()))
            for key in ctx["eda"]["figures"]]


def assessment_view(a) -> dict:
    """What the documents add to an assessment: its title, its role, and its figures' and tables' captions."""
    name = str(a["name"])
    acc = a.get("accepted") or {}
    t = a["device"]["threshold"]
    role = a.get("role") or "external set: no development decision was made on it"
    title = name.replace("_", " ").replace("-", " ").strip().capitalize()
    if isinstance(a["name"], TracedStr):  # the set's name as a title keeps its source (and its digits sourced)
        title = TracedStr(title, a["name"].ref)
    view = {"title": title, "role_text": str(role), "figure_captions": {},
            "table_captions": {"metrics": f"{title}: metrics at the locked threshold",
                               "acceptance": f"{title}: acceptance against the profile's criteria",
                               "shift": f"{title}: shift from the internal test split"}}
    if acc:
        view["figure_captions"] = {
            "roc": f"{view['title']}: ROC curve (AUROC {acc['auroc']['value']:.3f}, {acc['n_images']:,} images); the "
                   f"dot is the locked threshold {t:.3g}",
            "pr": f"{view['title']}: precision-recall curve; the dot is the locked threshold {t:.3g} ("
                  + (f"PPV {acc['ppv']['value']:.3f})" if acc["ppv"]["value"] is not None else
                     "no PPV: the device called no image of this set positive)"),
            "reliability": f"{view['title']}: reliability of the probabilities (ten equal-width bins; ECE "
                           f"{acc['ece']['value']:.3f})",
            "confusion": f"{view['title']}: confusion matrix at the locked threshold {t:.3g}",
            "score_shift": f"{view['title']}: score distributions by reference class, internal test split against "
                           f"this set; the dashed line is the locked threshold {t:.3g}",
        }
    pv = a.get("predictive_values_at_intended_prevalence")
    if pv and isinstance(pv.get("ppv"), Mapping):  # an assessment.json of the nested layout {"ppv": {"value", "bounds"}}
        pv = {"prevalence": pv["prevalence"], "method": pv["method"],
              "ppv": pv["ppv"]["value"], "ppv_ci95": pv["ppv"]["bounds"],
              "npv": pv["npv"]["value"], "npv_ci95": pv["npv"]["bounds"]}
    view["at_prevalence"] = pv or None
    delong = (acc.get("auroc") or {}).get("delong") or {}
    chosen = (acc.get("auroc") or {}).get("interval") or delong
    view["auroc_interval"] = chosen.get("ci95")
    view["auroc_method"] = chosen.get("method", "DeLong")
    return view


def monitoring(ctx: dict) -> dict:
    """The post-market signals with their released values and limits (exact binomial p-chart
    limits, inside [0, 1], for the profile's review volume: ``flag_limits`` of the context)."""
    from validation.control_limits import METHOD

    profile, flag = ctx["profile"], ctx["flag_limits"]
    n = profile["postmarket"]["review_volume"]
    signals = [{"signal": "share of studies flagged",
                "released": f"{100 * flag['rate']:.1f}% expected at prevalence {100 * flag['prevalence']:.1f}% "
                            f"(sensitivity {flag['sensitivity']:.3f} and specificity {flag['specificity']:.3f} of "
                            f"{flag['basis']})",
                "limit": f"outside {100 * flag['lower']:.1f}% to {100 * flag['upper']:.1f}% over {n:,} studies"}]
    refused = [(a["title"], a["scoring"]["n_not_scored"] / a["inputs"]["n_labelled"]) for a in ctx["assessments"]
               if a["inputs"]["n_labelled"]]
    limit = profile["study"]["refusal_limit"]
    signals.append({"signal": "share of studies refused by the input rules",
                    "released": "; ".join(f"{name} {100 * share:.1f}%" for name, share in refused) or
                    "not measured (no assessment)",
                    "limit": f"above {100 * limit:.0f}% of the studies of a review period"})
    post = profile["postmarket"]
    signals.append({"signal": "score distribution",
                    "released": "the reference distribution locked in the bundle (from the data the threshold was "
                                "chosen on)",
                    "limit": f"population stability index above {post['psi_limit']}, or a Kolmogorov-Smirnov test "
                             f"below p = {post['drift_p_value']}"})
    text = (f"A review period is {n:,} studies (the profile's review volume); with fewer studies the limits widen. "
            "The limits of the shares are")
    return {"signals": signals, "band_text": text, "method": METHOD + ": they never leave 0% to 100%."}


#: The requirement whose tests drive the node with the tools hospitals use (DCMTK, dciodvfy, Orthanc).
INTEROP_REQUIREMENT = "REQ-NODE-008"


def dicom_evidence(ctx: dict) -> dict:
    """What exercised the DICOM path (input rules, decoding, the node): the assessments of DICOM
    inputs - how many of their files cxr-device wrote itself as synthetic phantoms - and the
    interoperability tests with the hospitals' tools in the JUnit report. ``site`` names the DICOM
    assessments holding files the device did not write: without one, the DICOM evidence
    is the device's own files and the documents say so."""
    dicom = [a for a in ctx["assessments"] if a["inputs"].get("source") == "dicom"]
    rows = [{"title": a["title"], "n": a["inputs"]["n_labelled"], "synthetic": a["inputs"].get("n_synthetic_dicom")}
            for a in dicom]
    site = [r["title"] for r in rows if r["synthetic"] is not None and r["synthetic"] < r["n"]]
    interop = next((r["status"] for r in ctx["trace"] or [] if r["id"] == INTEROP_REQUIREMENT), None)
    return {"assessments": rows, "site": site, "interop": interop, "requirement": INTEROP_REQUIREMENT}


#: Settings of model/config.yaml the algorithm description states (network: section 2.3 from
#: model/layers.json; preprocessing: section 2.2; the rest: section 3), and settings that do not
#: change the trained model (where and how fast it trains). ``recipe_not_described`` lists any
#: other setting: a new setting must be described before a package can be issued.
RECIPE_DESCRIBED = frozenset({
    "model.arch", "model.weights", "model.freeze", "model.head_hidden", "model.dropout",
    "augmentation.rotation_degrees", "augmentation.translate", "augmentation.zoom", "augmentation.brightness",
    "augmentation.contrast", "augmentation.horizontal_flip", "augmentation.resized_crop_scale", "augmentation.gamma",
    "image_size", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule", "warmup_epochs",
    "label_smoothing", "ema_decay", "patience", "imbalance", "seed", "amp", "cpu_bf16", "max_steps_per_epoch",
    "preprocessing.image_size", "preprocessing.margin", "preprocessing.mean", "preprocessing.std",
    "preprocessing.resize", "preprocessing.stored_size"})
RECIPE_OPERATIONAL = frozenset({"device", "workers", "cache_dir"})


def recipe_not_described(config: dict, prefix: str = "") -> list[str]:
    """The settings of a training configuration (nested keys joined by dots) that are neither
    described nor operational."""
    out = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += recipe_not_described(value, f"{name}.")
        elif name not in RECIPE_DESCRIBED | RECIPE_OPERATIONAL:
            out.append(name)
    return sorted(out)


def inference_text(ctx: dict) -> str:
    """How the locked device turns an image into one logit: one model or an ensemble, one view or
    test-time views (metrics.json ``inference``, as the bundle locks it)."""
    inference = ctx["metrics"].get("inference") or {"members": 1, "views": ["center"]}
    members, views = inference["members"], inference["views"]
    model = ("one trained model" if members == 1 else
             f"an ensemble of {members} models of this recipe, each trained with its own seed")
    n_views = views.count_traced() if hasattr(views, "count_traced") else len(views)
    seen = ("the centre crop of the stored image" if len(views) == 1 else
            f"{n_views} crops of the stored image ({', '.join(str(v).replace('_', ' ') for v in views)})")
    combine = "" if members == 1 and len(views) == 1 else "; the logits are averaged before calibration"
    return f"**Inference.** The device scores {seen} with {model}{combine}."
