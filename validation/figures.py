"""Evaluation figures with stable names (the submission documents embed them by name).

Drawn in the one style of :mod:`cxr_device.figure_style`, at the size each is placed at: the
curves that share a row of the documents' two-column grid (ROC, precision-recall, threshold,
confusion, an assessment's reliability) at :data:`CELL_WIDTH`, the others at the text width; each
saved as PNG with an SVG beside it, legends outside the data.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cxr_device.figure_style import (
    CELL_HEIGHT,
    CELL_WIDTH,
    FULL_WIDTH,
    PALETTE,
    legend_outside,
    new_figure,
    save,
    set_title,
    styled,
)
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
COLORS = {"val": PALETTE[0], "test": PALETTE[1], "internal": PALETTE[2], "external": PALETTE[3]}
NAMES = {"val": "validation", "test": "test", "internal": "internal test", "external": "external"}


def _style(name: str) -> tuple[str, str]:
    """(colour, label) of a named series (a key or a label of :data:`NAMES`); any other name gets
    the external colour and itself."""
    key = next((k for k, label in NAMES.items() if name in (k, label)), None)
    return (COLORS[key], NAMES[key]) if key else (COLORS["external"], name)


def _axes(title: str, width: float = CELL_WIDTH, height: float = CELL_HEIGHT) -> tuple[Figure, object]:
    """A figure of the placed size with one axes, its title wrapped to the width."""
    fig = new_figure(width, height)
    ax = fig.subplots()
    set_title(ax, title)
    return fig, ax


def _pr_points(probs, labels):
    r = ranking(probs, labels)
    tps, fps = cumulative_counts(r)
    return tps / max(tps[-1], 1e-300), tps / np.maximum(tps + fps, 1e-300)


@styled
def plot_roc(splits: dict, band: dict | None, threshold: float, path: Path) -> None:
    fig, ax = _axes("ROC curve")
    if band:
        ax.fill_between(band["fpr"], np.clip(band["tpr_lo"], 0.0, 1.0), np.clip(band["tpr_hi"], 0.0, 1.0),
                        color=COLORS["test"], alpha=0.2, linewidth=0, label=ROC_BAND_METHOD)
    for name, (probs, labels, auroc) in splits.items():
        fpr, tpr = roc_points(ranking(probs, labels))
        ax.plot(fpr, tpr, color=COLORS[name], label=f"{NAMES[name]} (AUROC {auroc:.3f})")
        c = confusion(probs, labels, threshold)
        ax.plot(c["fp"] / max(c["fp"] + c["tn"], 1), c["tp"] / max(c["tp"] + c["fn"], 1), "o", color=COLORS[name])
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    _unit_square(ax)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity")
    legend_outside(fig)
    save(fig, path)


def _unit_square(ax) -> None:
    """Both axes from 0 to 1, in the same units."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_box_aspect(1)


@styled
def plot_pr(splits: dict, threshold: float, chosen_f1: float, path: Path, radiologist_f1: float | None) -> None:
    fig, ax = _axes("Precision-recall curve")
    recall_grid = np.linspace(0.01, 1, 200)
    for f1 in (0.2, 0.4, 0.6, 0.8):
        precision = f1 * recall_grid / (2 * recall_grid - f1)
        ok = (precision > 0) & (precision <= 1)
        ax.plot(recall_grid[ok], precision[ok], color="lightgrey", linewidth=0.8)
        ax.annotate(f"F1={f1}", (recall_grid[ok][-1], precision[ok][-1]), xytext=(-2, 2), textcoords="offset points",
                    ha="right", va="bottom", fontsize=7, color="grey", zorder=1,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    if radiologist_f1:
        precision = radiologist_f1 * recall_grid / (2 * recall_grid - radiologist_f1)
        ok = (precision > 0) & (precision <= 1)
        ax.plot(recall_grid[ok], precision[ok], "--", color=PALETTE[4],
                label=f"radiologist F1 {radiologist_f1} (CheXNet reader study)")
    for name, (probs, labels, ap) in splits.items():
        recall, precision = _pr_points(probs, labels)
        ax.step(recall, precision, where="post", color=COLORS[name], label=f"{NAMES[name]} (AP {ap:.3f})")
        c = confusion(probs, labels, threshold)
        ax.plot(c["tp"] / max(c["tp"] + c["fn"], 1), c["tp"] / max(c["tp"] + c["fp"], 1), "o", color=COLORS[name])
    ax.plot([], [], "o", color="black", label=f"locked threshold {threshold:.3f} (validation F1 {chosen_f1:.3f})")
    _unit_square(ax)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    legend_outside(fig)
    save(fig, path)


@styled
def plot_threshold(probs: np.ndarray, labels: np.ndarray, threshold: float, path: Path, rule: str = "max F1") -> None:
    r = ranking(probs, labels)
    tps, fps = cumulative_counts(r)
    positives = tps[-1]
    precision = tps / np.maximum(tps + fps, 1e-300)
    recall = tps / max(positives, 1e-300)
    f1 = 2 * tps / (tps + fps + positives)
    fig, ax = _axes("Validation F1, precision and recall against threshold")
    ax.plot(r.values, f1, label="F1", color="black")
    ax.plot(r.values, precision, label="precision (PPV)", color=COLORS["val"])
    ax.plot(r.values, recall, label="recall (sensitivity)", color=COLORS["test"])
    ax.axvline(threshold, linestyle="--", color="grey", label=f"locked threshold {threshold:.3f} ({rule})")
    ax.set_xlabel("threshold (positive when probability >= threshold)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    legend_outside(fig, ncols=2)
    save(fig, path)


@styled
def plot_confusion(probs: np.ndarray, labels: np.ndarray, threshold: float, path: Path,
                   title: str = "Test confusion matrix") -> None:
    c = confusion(probs, labels, threshold)
    table = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = _axes(f"{title} at threshold {threshold:.3f}")
    ax.grid(False)
    ax.imshow(table, cmap="Blues")
    total = table.sum()
    for (i, j), value in np.ndenumerate(table):
        ax.text(j, i, f"{int(value)}\n({100 * value / total:.1f}%)", ha="center", va="center", fontsize=8,
                color="white" if value > table.max() / 2 else "black")
    ax.set_xticks([0, 1], ["no pneumonia", "pneumonia"])
    ax.set_yticks([0, 1], ["no pneumonia", "pneumonia"], rotation=90, va="center")
    ax.set_xlabel("device decision")
    ax.set_ylabel("reference label")
    save(fig, path)


@styled
def plot_calibration(tables: dict, path: Path, width: float = FULL_WIDTH) -> None:
    """Observed frequency against mean predicted probability per bin, one line per table (named
    ``"validation, before calibration"``, ``"test, after"``, or a set's name: coloured by the set,
    dashed before calibration); the legend beside the plot at the text width, below it in a grid
    cell (``width`` CELL_WIDTH)."""
    full = width > CELL_WIDTH
    fig, ax = _axes("Calibration (reliability)", width, 3.4 if full else CELL_HEIGHT)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, rows in tables.items():
        colour = _style(name.split(",")[0])[0]
        ax.plot([r["mean_predicted"] for r in rows], [r["observed"] for r in rows],
                "s--" if "before" in name else "o-", color=colour, label=name)
    ax.set_xlabel("mean predicted probability (10 equal-width bins)")
    ax.set_ylabel("observed frequency of pneumonia")
    _unit_square(ax)
    ax.set_ylim(0, 1)
    legend_outside(fig, "right" if full else "below")
    save(fig, path)


@styled
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
    _unit_square(ax)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity")
    legend_outside(fig)
    save(fig, roc_path)
    fig, ax = _axes(f"Precision-recall curve: {name}")
    recall, prec = _pr_points(probs, labels)
    ax.step(recall, prec, where="post", color=colour, label=name)
    ax.plot(sensitivity, precision, "o", color="black", label=f"{point} (PPV {precision:.3f})")
    _unit_square(ax)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    legend_outside(fig)
    save(fig, pr_path)


PAIRED_COLORS = {"baseline": PALETTE[2], "candidate": PALETTE[1]}


@styled
def plot_paired_roc(curves: dict, labels: np.ndarray, title: str, path: Path) -> None:
    """ROC curves of two devices on the same cases, each with its locked operating point.
    ``curves``: name -> (probabilities, AUROC, (sensitivity, specificity) at its locked threshold)."""
    fig, ax = _axes(title, FULL_WIDTH, 3.8)
    for name, (probs, auroc, (sensitivity, specificity)) in curves.items():
        colour = PAIRED_COLORS.get(name, COLORS["external"])
        x, y = roc_points(ranking(probs, labels))
        ax.plot(x, y, color=colour, label=f"{name} (AUROC {auroc:.3f})")
        ax.plot(1 - specificity, sensitivity, "o", color=colour, markersize=6, markeredgecolor="black",
                label=f"{name} locked threshold (sens {sensitivity:.3f}, spec {specificity:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    _unit_square(ax)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity")
    legend_outside(fig, "right")
    save(fig, path)


@styled
def plot_score_shift(internal_probs: np.ndarray, internal_labels: np.ndarray, external_probs: np.ndarray,
                     external_labels: np.ndarray, threshold: float, path: Path) -> None:
    """Score histograms per class, internal test against the external set, the locked threshold marked."""
    fig = new_figure(FULL_WIDTH, 3.0)
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
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=1)  # each panel's own n, below it
    save(fig, path)


def copy_training_curves(model_dir: Path, out: Path) -> bool:
    """Copy the training curves (PNG, and the SVG beside it when there is one) into ``out``."""
    source = model_dir / TRAINING_CURVES
    if not source.is_file():
        return False
    shutil.copyfile(source, out / FIGURES["training"])
    if source.with_suffix(".svg").is_file():
        shutil.copyfile(source.with_suffix(".svg"), (out / FIGURES["training"]).with_suffix(".svg"))
    return True
