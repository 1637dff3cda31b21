"""The figures of ``cxr-device monitor``: volume per day, the p-charts of the flag and refusal shares,
the scores against the reference, and time to notification. Only days and numbers are drawn: no
text from the node's records (an AE title or a manufacturer) ever reaches a figure. Drawn in the
documents' one figure style (:mod:`cxr_device.figure_style`) at the text width, legends off the
data; each is a PNG with its SVG beside it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr_device.figure_style import FULL_WIDTH, PALETTE, legend_outside, new_figure, save, set_title, styled

from .drift import bin_edges

FIGURES = {"volume": "volume.png", "p_charts": "p_charts.png", "scores": "scores.png", "ttn": "ttn.png"}


@styled
def plot_volume(days: list[dict], path: Path) -> None:
    """Studies and images per day."""
    fig = new_figure(FULL_WIDTH, 3.2)
    ax = fig.subplots()
    x = np.arange(len(days))
    ax.bar(x - 0.2, [d["volume"]["studies"] for d in days], width=0.4, label="studies", color=PALETTE[0])
    ax.bar(x + 0.2, [d["volume"]["images"] for d in days], width=0.4, label="images", color="#95a5a6")
    _days_axis(ax, days)
    ax.set_ylabel("count")
    set_title(ax, "Volume per day (UTC day of the last image received)")
    legend_outside(fig, ncols=2)
    save(fig, path)


@styled
def plot_p_charts(days: list[dict], path: Path) -> None:
    """Daily flag share with its p-chart limits around the expected rate, and daily refusal share
    with the upper limit of the refusal limit."""
    fig = new_figure(FULL_WIDTH, 6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(days))
    flags = [d["flag"] for d in days]
    _chart(top, x, [f["share"] for f in flags], [f["lower"] for f in flags], [f["upper"] for f in flags],
           [f["expected"] for f in flags], [f["crossed"] for f in flags])
    set_title(top, "Share of scored studies flagged (p-chart, exact binomial limits for each day's n)")
    refusals = [d["refusal"] for d in days]
    _chart(bottom, x, [r["share"] for r in refusals], [None] * len(days), [r["upper"] for r in refusals],
           [r["limit"] if r["n_studies"] else None for r in refusals], [r["crossed"] for r in refusals])
    set_title(bottom, "Share of studies not scored (refused or unreadable), upper limit of the refusal limit")
    _days_axis(bottom, days)
    legend_outside(fig, ncols=2)
    save(fig, path)


def _chart(ax, x, share, lower, upper, centre, crossed) -> None:
    def values(seq):
        return np.array([np.nan if v is None else v for v in seq], dtype=float)

    # each day's own limits (they depend on its n): a short line across the day
    ax.hlines(values(upper), x - 0.4, x + 0.4, color=PALETTE[1], linestyle="--", label="limits")
    ax.hlines(values(lower), x - 0.4, x + 0.4, color=PALETTE[1], linestyle="--")
    ax.hlines(values(centre), x - 0.4, x + 0.4, color="grey", linestyle=":", label="expected rate / limit")
    share_values = values(share)
    ax.plot(x, share_values, "o-", color=PALETTE[0], label="observed")
    out = np.array(crossed, dtype=bool)
    if out.any():
        ax.plot(x[out], share_values[out], "o", color=PALETTE[1], markersize=9, fillstyle="none", label="crossed")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share")


@styled
def plot_scores(reference: np.ndarray, observed: np.ndarray, path: Path, psi: float | None,
                ks_p: float | None) -> None:
    """Histograms of the reference and observed probabilities, the PSI bins' edges marked."""
    fig = new_figure(FULL_WIDTH, 3.5)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    ax.hist(reference, bins=bins, density=True, alpha=0.5, color=PALETTE[2], label=f"reference (n={len(reference)})")
    if len(observed):
        ax.hist(observed, bins=bins, density=True, alpha=0.5, color=PALETTE[3], label=f"in use (n={len(observed)})")
    for edge in bin_edges(reference):
        ax.axvline(edge, color="black", linewidth=0.5, alpha=0.4)
    stats = "" if psi is None else f": PSI {psi:.3f}, KS p {ks_p:.3g}"
    set_title(ax, f"Device probability, in use against the locked reference{stats}")
    ax.set_xlabel("probability of pneumonia (thin lines: the reference's deciles, the PSI bins)")
    ax.set_ylabel("density")
    legend_outside(fig, ncols=2)
    save(fig, path)


@styled
def plot_ttn(seconds: list[float], p50: float, p95: float, path: Path) -> None:
    """Histogram of the studies' times to notification, p50 and p95 marked."""
    fig = new_figure(FULL_WIDTH, 3.2)
    ax = fig.subplots()
    ax.hist(seconds, bins=min(40, max(5, len(seconds) // 2)), color=PALETTE[0], alpha=0.8)
    ax.axvline(p50, color="black", linestyle="--", label=f"p50 {p50:.2f} s")
    ax.axvline(p95, color=PALETTE[1], linestyle="--", label=f"p95 {p95:.2f} s")
    ax.set_xlabel("seconds from the last image received to the notification (monotonic clock)")
    ax.set_ylabel("studies")
    set_title(ax, "Time to notification")
    legend_outside(fig, ncols=2)
    save(fig, path)


def _days_axis(ax, days: list[dict]) -> None:
    step = max(1, len(days) // 15)
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([days[i]["day"] for i in ticks], rotation=45, ha="right")
