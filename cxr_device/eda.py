"""Exploratory analysis of a cohort: ``eda.json`` plus figures with stable file names.

The figure names below are a contract: the submission documents embed them by name.
Figures that a dataset cannot support (no ages, no finding labels, no image files) are listed
under ``skipped`` in ``eda.json`` with the reason, never silently missing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from pydantic import Field
from tqdm import tqdm

from .cohort import read_cohort
from .figure_style import (
    CELL_HEIGHT,
    CELL_WIDTH,
    PALETTE,
    legend_outside,
    new_figure,
    save,
    set_title,
    style,
)
from .findings import FINDING_COLUMNS, NIH_FINDINGS, TARGET
from .imageio import ImageReadError, load_image
from .provenance import producer
from .run_layout import EDA_JSON
from .splits import SPLITS
from .validated import RANGE, Seed, check_setting

FIGURES = {
    "age_by_class": "age_by_class.png",
    "sex_view_by_class": "sex_view_by_class.png",
    "prevalence": "prevalence_by_split.png",
    "cooccurrence": "cooccurrence_with_pneumonia.png",
    "findings_per_image": "findings_per_image.png",
    "images_per_patient": "images_per_patient.png",
    "pixel_intensity": "pixel_intensity_by_class.png",
}
CLASS_NAMES = {1: "pneumonia", 0: "no pneumonia"}
COLORS = {1: PALETTE[1], 0: PALETTE[0]}
_BINS = 64


#: Images per class decoded for the intensity histograms (0 skips them).
PixelSample = Annotated[int, Field(ge=0, le=10_000), RANGE]


def run_eda(cohort_dir: str | Path, out_dir: str | Path, pixel_sample: int = 100, seed: int = 0,
            progress: bool = True) -> dict:
    """Analyse ``cohort_dir/cohort.csv``; write ``eda.json`` and figures into ``out_dir``.

    ``pixel_sample`` images per class (seeded) are decoded for intensity histograms; 0 skips it.
    Returns the ``eda.json`` content; ``n_unreadable`` counts images that failed to decode.
    """
    check_setting(PixelSample, pixel_sample, "pixel_sample")
    check_setting(Seed, seed, "seed")
    frame, summary = read_cohort(cohort_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "synthetic": summary.get("synthetic", False),
        "dataset": summary.get("dataset"),
        "n_images": int(len(frame)),
        "n_patients": int(frame["patient_id"].nunique()),
        "figures": {},
        "skipped": {},
    }
    steps = (
        ("prevalence", _prevalence),
        ("age_by_class", _age),
        ("sex_view_by_class", _sex_view),
        ("cooccurrence", _cooccurrence),
        ("findings_per_image", _findings_per_image),
        ("images_per_patient", _images_per_patient),
    )
    with style():  # every figure in the one style, drawn at the size of a cell of the documents' grid
        for key, step in steps:
            result = step(frame)
            _record(report, out, key, result)
        _record(report, out, "pixel_intensity", _pixels(frame, pixel_sample, seed, progress))
    report["n_unreadable"] = len(report.get("pixel_intensity", {}).get("unreadable", []))
    report["produced_by"] = producer("eda", {"cohort": str(cohort_dir), "pixel_sample": pixel_sample, "seed": seed})
    (out / EDA_JSON).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _record(report: dict, out: Path, key: str, result: tuple[dict, Figure | None] | str) -> None:
    """Store a step's numbers and save its figure, or note why it was skipped."""
    if isinstance(result, str):
        report["skipped"][key] = result
        return
    numbers, figure = result
    report[key] = numbers
    if figure is not None:
        save(figure, out / FIGURES[key])  # and the SVG beside it
        report["figures"][key] = FIGURES[key]


def _figure(title: str) -> tuple[Figure, object]:
    """A figure the size of a grid cell with one axes, its title wrapped to the width."""
    fig = new_figure(CELL_WIDTH, CELL_HEIGHT)
    ax = fig.subplots()
    set_title(ax, title)
    return fig, ax


def _by_class(frame: pd.DataFrame):
    for label in (1, 0):
        yield label, frame[frame[TARGET] == label]


def _prevalence(frame: pd.DataFrame):
    rows = {}
    for split in SPLITS + ("all",):
        part = frame if split == "all" else frame[frame["split"] == split]
        n_pos = int(part[TARGET].sum())
        rows[split] = {"n_images": int(len(part)), "n_positive": n_pos,
                       "prevalence": round(n_pos / len(part), 6) if len(part) else None}
    fig, ax = _figure("Pneumonia prevalence by split")
    names = list(rows)
    values = [100 * (rows[n]["prevalence"] or 0) for n in names]
    bars = ax.bar(names, values, color=[COLORS[1]] * 3 + [PALETTE[2]])
    for bar, name in zip(bars, names):
        ax.annotate(f"{rows[name]['n_positive']}/{rows[name]['n_images']}", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=7.5)
    ax.set_ylabel("prevalence (% of images)")
    ax.set_ylim(0, max(values + [1e-3]) * 1.18)  # room for the n/N labels
    return rows, fig


def _age(frame: pd.DataFrame):
    if frame["age_years"].notna().sum() == 0:
        return "the dataset records no ages"
    edges = np.arange(0, 101, 5)
    numbers = {}
    fig, ax = _figure("Age distribution by class")
    for label, part in _by_class(frame):
        ages = part["age_years"].dropna()
        counts, _ = np.histogram(ages, bins=edges)
        numbers[CLASS_NAMES[label]] = {
            "n": int(len(ages)),
            "mean": round(float(ages.mean()), 3) if len(ages) else None,
            "sd": round(float(ages.std()), 3) if len(ages) > 1 else None,
            "quartiles": [round(float(q), 3) for q in ages.quantile([0.25, 0.5, 0.75])] if len(ages) else None,
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        }
        if len(ages):
            ax.hist(ages, bins=edges, density=True, alpha=0.55, color=COLORS[label],
                    label=f"{CLASS_NAMES[label]} (n={len(ages)})")
    ax.set_xlabel("age (years)")
    ax.set_ylabel("density")
    legend_outside(fig)
    return numbers, fig


def _sex_view(frame: pd.DataFrame):
    columns = [c for c in ("sex", "view") if frame[c].fillna("").ne("").any()]
    if not columns:
        return "the dataset records neither sex nor view position"
    numbers = {}
    fig = new_figure(CELL_WIDTH, CELL_HEIGHT)
    axes = np.atleast_1d(fig.subplots(1, len(columns), sharey=True))
    for ax, column in zip(axes, columns):
        table = pd.crosstab(frame[column].fillna("unknown"), frame[TARGET]).reindex(columns=[1, 0], fill_value=0)
        share = table / table.sum(axis=0).replace(0, 1)
        numbers[column] = {CLASS_NAMES[c]: {str(k): int(v) for k, v in table[c].items()} for c in (1, 0)}
        x = np.arange(len(table.index))
        for offset, label in ((-0.2, 1), (0.2, 0)):
            ax.bar(x + offset, 100 * share[label], width=0.4, color=COLORS[label], label=CLASS_NAMES[label])
        ax.set_xticks(x, table.index)
        set_title(ax, f"{'Sex' if column == 'sex' else 'View position'} by class")
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("% of class")
    legend_outside(fig, ncols=2, axes=axes[:1])
    return numbers, fig


def _finding_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in FINDING_COLUMNS if c in frame and c not in (TARGET, "no_finding")]


def _cooccurrence(frame: pd.DataFrame):
    columns = _finding_columns(frame)
    if not columns:
        return "the dataset has no finding labels besides pneumonia"
    pos, neg = frame[frame[TARGET] == 1], frame[frame[TARGET] == 0]
    names = {c: n for c, n in zip(FINDING_COLUMNS, NIH_FINDINGS)}
    numbers = {
        names[c]: {
            "n_with_pneumonia": int(pos[c].sum()),
            "share_of_pneumonia_images": round(float(pos[c].mean()), 6) if len(pos) else None,
            "share_of_other_images": round(float(neg[c].mean()), 6) if len(neg) else None,
        }
        for c in columns
    }
    alone = int((pos[columns].sum(axis=1) == 0).sum())
    order = sorted(numbers, key=lambda n: numbers[n]["n_with_pneumonia"], reverse=True)
    fig, ax = _figure(f"Findings co-occurring with pneumonia (n={len(pos)} pneumonia images)")
    y = np.arange(len(order))
    ax.barh(y - 0.2, [100 * (numbers[n]["share_of_pneumonia_images"] or 0) for n in order], height=0.4,
            color=COLORS[1], label="pneumonia images")
    ax.barh(y + 0.2, [100 * (numbers[n]["share_of_other_images"] or 0) for n in order], height=0.4,
            color=COLORS[0], label="other images")
    ax.set_yticks(y, order)
    ax.invert_yaxis()
    ax.set_xlabel("% of images with the finding")
    legend_outside(fig, ncols=2)
    return {"findings": numbers, "pneumonia_alone": alone}, fig


def _findings_per_image(frame: pd.DataFrame):
    columns = _finding_columns(frame) + [TARGET]
    if len(columns) == 1:
        return "the dataset has no finding labels besides pneumonia"
    count = frame[columns].sum(axis=1)
    table = pd.crosstab(count, frame[TARGET]).reindex(columns=[1, 0], fill_value=0)
    numbers = {CLASS_NAMES[c]: {str(k): int(v) for k, v in table[c].items()} for c in (1, 0)}
    fig, ax = _figure("Number of findings per image")
    share = table / table.sum(axis=0).replace(0, 1)
    x = table.index.to_numpy()
    for offset, label in ((-0.2, 1), (0.2, 0)):
        ax.bar(x + offset, 100 * share[label], width=0.4, color=COLORS[label], label=CLASS_NAMES[label])
    ax.set_xlabel("findings on the image (0 = No Finding)")
    ax.set_ylabel("% of class")
    legend_outside(fig, ncols=2)
    return numbers, fig


def _images_per_patient(frame: pd.DataFrame):
    per = frame.groupby("patient_id").size()
    counts = per.value_counts().sort_index()
    numbers = {
        "mean": round(float(per.mean()), 3),
        "median": float(per.median()),
        "max": int(per.max()),
        "patients_with_n_images": {str(k): int(v) for k, v in counts.items()},
    }
    fig, ax = _figure(f"Images per patient ({len(per)} patients)")
    ax.bar(counts.index, counts.values, color=PALETTE[2])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1, 10, 100: no small exponents
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("images per patient")
    ax.set_ylabel("patients (log scale)")
    return numbers, fig


def _pixels(frame: pd.DataFrame, sample: int, seed: int, progress: bool):
    with_path = frame[frame["path"].fillna("").ne("")]
    if sample <= 0:
        return "--pixel-sample 0"
    if with_path.empty:
        return "the cohort has no image files (--metadata-only)"
    rng = np.random.default_rng(seed)
    chosen = []
    for label, part in _by_class(with_path):
        take = min(sample, len(part))
        idx = np.sort(rng.permutation(len(part))[:take])
        chosen += [(label, p) for p in part["path"].iloc[idx]]
    edges = np.linspace(0, 1, _BINS + 1)
    hists = {0: [], 1: []}
    stats = {0: [], 1: []}
    unreadable = []
    for label, path in tqdm(chosen, desc="eda pixels", unit="img", disable=not progress):
        try:
            image = load_image(path)
        except ImageReadError as err:
            unreadable.append(str(err))
            continue
        hist, _ = np.histogram(image, bins=edges)
        hists[label].append(hist / hist.sum())
        stats[label].append((float(image.mean()), float(image.std())))
    numbers = {"bin_edges": edges.round(6).tolist(), "unreadable": unreadable}
    fig, ax = _figure("Pixel intensity by class (seeded sample)")
    centers = (edges[:-1] + edges[1:]) / 2
    for label in (1, 0):
        if not hists[label]:
            continue
        stack = np.array(hists[label])
        mean, sd = stack.mean(axis=0), stack.std(axis=0)
        image_stats = np.array(stats[label])
        numbers[CLASS_NAMES[label]] = {
            "n_sampled": len(hists[label]),
            "mean_intensity": round(float(image_stats[:, 0].mean()), 6),
            "mean_sd_within_image": round(float(image_stats[:, 1].mean()), 6),
            "mean_histogram": mean.round(6).tolist(),
        }
        ax.plot(centers, mean, color=COLORS[label], label=f"{CLASS_NAMES[label]} (n={len(stack)})")
        ax.fill_between(centers, np.clip(mean - sd, 0, None), mean + sd, color=COLORS[label], alpha=0.2)
    ax.set_xlabel("intensity (0 = black, 1 = white)")
    ax.set_ylabel("share of pixels (mean ± sd over images)")
    legend_outside(fig)
    return numbers, fig
