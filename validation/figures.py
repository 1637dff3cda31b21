"""Evaluation figures with stable names (the submission documents embed them by name)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cxr_device.run_layout import TRAINING_CURVES

from .calibration import reliability as calibration_table  # noqa: F401 - the table the calibration figure plots
from .metrics import confusion, cumulative_counts, ranking, roc_points

FIGURES = {
    "roc": "roc.png",
    "pr": "precision_recall.png",
    "threshold": "threshold_curves.png",
    "confusion": "confusion_matrix.png",
    "calibration": "calibration.png",
    "training": TRAINING_CURVES,
}
#: How the ROC band is made (the legend of roc.png says it).
ROC_BAND_METHOD = "test: pointwise 95% band of sensitivity (patient bootstrap, percentile)"
#: Radiologist F1 on NIH pneumonia in the CheXNet reader study (Rajpurkar et al., 2017).
RADIOLOGIST_F1 = 0.387
COLORS = {"val": "#2e6fa7", "test": "#c0392b", "internal": "#7f8c8d", "external": "#d35400"}
NAMES = {"val": "validation", "test": "test", "internal": "internal test", "external": "external"}


def _style(name: str) -> tuple[str, str]:
    """(colour, label) of a named series; any other name gets the external colour and itself."""
    return COLORS.get(name, COLORS["external"]), NAMES.get(name, name)


def _axes(title: str, size=(5.5, 5.0)):
    fig = Figure(figsize=size)
    ax = fig.subplots()
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def _pr_points(probs, labels):
    r = ranking(probs, labels)
    tps, fps = cumulative_counts(r)
    return tps / max(tps[-1], 1e-300), tps / np.maximum(tps + fps, 1e-300)


def plot_roc(splits: dict, band: dict | None, threshold: float, path: Path) -> None:
    fig, ax = _axes("ROC curve")
    if band:
        ax.fill_between(band["fpr"], np.clip(band["tpr_lo"], 0.0, 1.0), np.clip(band["tpr_hi"], 0.0, 1.0),
                        color=COLORS["test"], alpha=0.2, label=ROC_BAND_METHOD)
    for name, (probs, labels, auroc) in splits.items():
        fpr, tpr = roc_points(ranking(probs, labels))
        ax.plot(fpr, tpr, color=COLORS[name], label=f"{NAMES[name]} (AUROC {auroc:.3f})")
        c = confusion(probs, labels, threshold)
        ax.plot(c["fp"] / max(c["fp"] + c["tn"], 1), c["tp"] / max(c["tp"] + c["fn"], 1), "o", color=COLORS[name])
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_pr(splits: dict, threshold: float, chosen_f1: float, path: Path, radiologist_f1: float | None) -> None:
    fig, ax = _axes("Precision-recall curve")
    recall_grid = np.linspace(0.01, 1, 200)
    for f1 in (0.2, 0.4, 0.6, 0.8):
        precision = f1 * recall_grid / (2 * recall_grid - f1)
        ok = (precision > 0) & (precision <= 1)
        ax.plot(recall_grid[ok], precision[ok], color="lightgrey", linewidth=0.8)
        ax.annotate(f"F1={f1}", (recall_grid[ok][-1], precision[ok][-1]), fontsize=7, color="grey")
    if radiologist_f1:
        precision = radiologist_f1 * recall_grid / (2 * recall_grid - radiologist_f1)
        ok = (precision > 0) & (precision <= 1)
        ax.plot(recall_grid[ok], precision[ok], "--", color="#8e44ad",
                label=f"radiologist F1 {radiologist_f1} (CheXNet reader study)")
    for name, (probs, labels, ap) in splits.items():
        recall, precision = _pr_points(probs, labels)
        ax.step(recall, precision, where="post", color=COLORS[name], label=f"{NAMES[name]} (AP {ap:.3f})")
        c = confusion(probs, labels, threshold)
        ax.plot(c["tp"] / max(c["tp"] + c["fn"], 1), c["tp"] / max(c["tp"] + c["fp"], 1), "o", color=COLORS[name],
                markersize=8)
    ax.plot([], [], "o", color="black", label=f"locked threshold {threshold:.3f} (validation F1 {chosen_f1:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.legend(loc="lower left", fontsize=7)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_threshold(probs: np.ndarray, labels: np.ndarray, threshold: float, path: Path, rule: str = "max F1") -> None:
    r = ranking(probs, labels)
    tps, fps = cumulative_counts(r)
    positives = tps[-1]
    precision = tps / np.maximum(tps + fps, 1e-300)
    recall = tps / max(positives, 1e-300)
    f1 = 2 * tps / (tps + fps + positives)
    fig, ax = _axes("Validation F1, precision and recall against threshold", size=(7, 4.2))
    ax.plot(r.values, f1, label="F1", color="black")
    ax.plot(r.values, precision, label="precision (PPV)", color=COLORS["val"])
    ax.plot(r.values, recall, label="recall (sensitivity)", color=COLORS["test"])
    ax.axvline(threshold, linestyle="--", color="grey", label=f"locked threshold {threshold:.3f} ({rule})")
    ax.set_xlabel("threshold (positive when probability >= threshold)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_confusion(probs: np.ndarray, labels: np.ndarray, threshold: float, path: Path,
                   title: str = "Test confusion matrix") -> None:
    c = confusion(probs, labels, threshold)
    table = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = _axes(f"{title} at threshold {threshold:.3f}", size=(4.6, 4.2))
    ax.grid(False)
    ax.imshow(table, cmap="Blues")
    total = table.sum()
    for (i, j), value in np.ndenumerate(table):
        ax.text(j, i, f"{int(value)}\n({100 * value / total:.1f}%)", ha="center", va="center",
                color="white" if value > table.max() / 2 else "black")
    ax.set_xticks([0, 1], ["no pneumonia", "pneumonia"])
    ax.set_yticks([0, 1], ["no pneumonia", "pneumonia"])
    ax.set_xlabel("device decision")
    ax.set_ylabel("reference label")
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_calibration(tables: dict, path: Path) -> None:
    fig, ax = _axes("Calibration (reliability)")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, rows in tables.items():
        colour, label = _style(name)
        ax.plot([r["mean_predicted"] for r in rows], [r["observed"] for r in rows], "o-", color=colour,
                label=f"{label} (10 equal-width bins)")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency of pneumonia")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_operating_point(probs: np.ndarray, labels: np.ndarray, threshold: float, name: str, roc_path: Path,
                         pr_path: Path) -> None:
    """ROC and precision-recall curves of one set, each with the locked operating point marked."""
    colour = _style(name)[0]
    c = confusion(probs, labels, threshold)
    sensitivity = c["tp"] / max(c["tp"] + c["fn"], 1)
    fpr = c["fp"] / max(c["fp"] + c["tn"], 1)
    precision = c["tp"] / max(c["tp"] + c["fp"], 1)
    point = f"locked threshold {threshold:.3f}"
    fig, ax = _axes(f"ROC curve: {name}")
    x, y = roc_points(ranking(probs, labels))
    ax.plot(x, y, color=colour, label=name)
    ax.plot(fpr, sensitivity, "o", color="black", label=f"{point} (sens {sensitivity:.3f}, spec {1 - fpr:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(roc_path, dpi=120, bbox_inches="tight")
    fig, ax = _axes(f"Precision-recall curve: {name}")
    recall, prec = _pr_points(probs, labels)
    ax.step(recall, prec, where="post", color=colour, label=name)
    ax.plot(sensitivity, precision, "o", color="black", label=f"{point} (PPV {precision:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(pr_path, dpi=120, bbox_inches="tight")


PAIRED_COLORS = {"baseline": "#7f8c8d", "candidate": "#c0392b"}


def plot_paired_roc(curves: dict, labels: np.ndarray, title: str, path: Path) -> None:
    """ROC curves of two devices on the same cases, each with its locked operating point.
    ``curves``: name -> (probabilities, AUROC, (sensitivity, specificity) at its locked threshold)."""
    fig, ax = _axes(title)
    for name, (probs, auroc, (sensitivity, specificity)) in curves.items():
        colour = PAIRED_COLORS.get(name, COLORS["external"])
        x, y = roc_points(ranking(probs, labels))
        ax.plot(x, y, color=colour, label=f"{name} (AUROC {auroc:.3f})")
        ax.plot(1 - specificity, sensitivity, "o", color=colour, markersize=8, markeredgecolor="black",
                label=f"{name} locked threshold (sens {sensitivity:.3f}, spec {specificity:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_score_shift(internal_probs: np.ndarray, internal_labels: np.ndarray, external_probs: np.ndarray,
                     external_labels: np.ndarray, threshold: float, path: Path) -> None:
    """Score histograms per class, internal test against the external set, the locked threshold marked."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=False)
    bins = np.linspace(0, 1, 26)
    for ax, label, title in zip(axes, (0, 1), ("reference: no pneumonia", "reference: pneumonia")):
        for probs, labels, name in ((internal_probs, internal_labels, "internal"),
                                    (external_probs, external_labels, "external")):
            chosen = probs[labels == label]
            colour, text = _style(name)
            if len(chosen):
                ax.hist(chosen, bins=bins, density=True, alpha=0.5, color=colour, label=f"{text} (n={len(chosen)})")
        ax.axvline(threshold, linestyle="--", color="black", label=f"locked threshold {threshold:.3f}")
        ax.set_title(title)
        ax.set_xlabel("device probability of pneumonia")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def copy_training_curves(model_dir: Path, out: Path) -> bool:
    source = model_dir / TRAINING_CURVES
    if source.is_file():
        shutil.copyfile(source, out / FIGURES["training"])
        return True
    return False
