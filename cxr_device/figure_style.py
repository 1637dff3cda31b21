"""The one look of every figure: a matplotlib style, the sizes figures are drawn at, how they are saved.

Every figure is drawn at the size the documents place it at - the text width (:data:`FULL_WIDTH`),
one cell of the two-column grid (:data:`CELL_WIDTH`) or a landscape page (:data:`LANDSCAPE_WIDTH`)
- so that the sizes of :data:`STYLE` are the printed sizes: no text is smaller than
:data:`MIN_TEXT_PT`. Legends go beside or below the data (:func:`legend_outside`), never on it;
long titles and entries are wrapped (:func:`wrapped`, :func:`set_title`). :func:`save` writes
the PNG (:data:`PNG_DPI`) and an SVG beside it, which the HTML and PDF embed; both are
byte-identical for the same drawing (no date, no software version in the PNG, a fixed SVG hash
salt, the text of the SVG kept as text).

Usage: decorate a function that draws with :func:`styled`, or draw inside ``with style():`` (the
style must apply while the figure is made: text sizes are fixed when text is created); make the
figure with :func:`new_figure` and end with :func:`save`.
"""
from __future__ import annotations

import contextlib
import functools
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
from cycler import cycler
from matplotlib.figure import Figure

#: Width of a figure placed across the text column, and of one cell of a two-figure row (inches).
FULL_WIDTH, CELL_WIDTH = 6.3, 3.1
#: Height of a grid cell's figure, the same for every cell so that a row of two lines up (inches).
CELL_HEIGHT = 3.4
#: A figure placed alone on a landscape page (a large diagram): its text block less the caption (inches).
LANDSCAPE_WIDTH, LANDSCAPE_HEIGHT = 10.2, 6.3
#: The smallest text any figure prints (points), at its placed size.
MIN_TEXT_PT = 7.0
PNG_DPI = 200
#: Average width of a character of DejaVu Sans, in ems (to wrap text to a width).
CHAR_EM = 0.6
#: The colours of series in order (blue, red, grey, orange, purple, green).
PALETTE = ("#2e6fa7", "#c0392b", "#7f8c8d", "#d35400", "#8e44ad", "#1e8449")
STYLE: dict = {
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 8.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "legend.title_fontsize": 7.5,
    "legend.frameon": False,
    "figure.titlesize": 9.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.linewidth": 0.7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "lines.linewidth": 1.4,
    "lines.markersize": 4.0,
    "patch.linewidth": 0.7,
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "savefig.bbox": "standard",  # never "tight": the saved size is the drawn size
    "svg.fonttype": "none",  # text stays text: selectable, and its size readable in the file
    "svg.hashsalt": "cxr-device",  # ids of clip paths and defs are then the same on every save
    "path.simplify": True,
}

_SVG_ROOT = re.compile(rb'<svg[^>]*?\swidth="([0-9.]+)pt"\s+height="([0-9.]+)pt"')
P = ParamSpec("P")
R = TypeVar("R")


def style() -> contextlib.AbstractContextManager:
    """A ``with`` block in which figures are drawn in :data:`STYLE`."""
    return matplotlib.rc_context(STYLE)


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run a drawing function under :data:`STYLE`."""
    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with style():
            return draw(*args, **kwargs)

    return wrapper


def new_figure(width: float = FULL_WIDTH, height: float | None = None, layout: str | None = "constrained") -> Figure:
    """An empty figure of the placed size (inches; ``height`` defaults to 0.62 of the width).
    ``layout=None`` for a drawing that positions its own axes."""
    return Figure(figsize=(width, height if height is not None else round(0.62 * width, 2)), layout=layout)


def wrapped(text: str, width: float, size: float | None = None, em: float = CHAR_EM) -> str:
    """``text`` broken into lines that fit ``width`` inches at ``size`` points (default: the
    legend's size; ``em``: average character width), for titles and legend entries."""
    size = size or STYLE["legend.fontsize"]
    return textwrap.fill(text, max(12, int(width * 72 / (size * em))), break_on_hyphens=False)


def set_title(ax, text: str) -> None:
    """The axes' title, wrapped to the room of its column of the figure, less the tick labels
    (titles are bold: wider characters)."""
    spec = ax.get_subplotspec()
    columns = spec.get_gridspec().ncols if spec is not None else 1
    ax.set_title(wrapped(text, 0.8 * ax.figure.get_figwidth() / columns, STYLE["axes.titlesize"], em=0.68))


def legend_outside(figure: Figure, where: str = "below", ncols: int = 1, axes=None) -> None:
    """One legend for the figure outside the data - ``below`` the axes or on the ``right`` -
    from the labelled artists of ``axes`` (default: all of them, each label once), each entry
    wrapped to the room it has."""
    handles, labels = [], []
    for ax in axes if axes is not None else figure.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if not handles:
        return
    room = figure.get_figwidth() / ncols - 0.4 if where == "below" else figure.get_figwidth() * 0.36
    figure.legend(handles, [wrapped(label, room) for label in labels], ncols=ncols,
                  loc="outside lower center" if where == "below" else "outside right upper")


def svg_size(svg: bytes) -> tuple[float, float] | None:
    """(width, height) in points that an SVG saved by :func:`save` was drawn at (``None`` when its
    root element does not give them in points)."""
    root = _SVG_ROOT.search(svg[:4000])
    return (float(root.group(1)), float(root.group(2))) if root else None


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``path`` (PNG, :data:`PNG_DPI`) and the SVG beside it; returns the PNG path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with style():
        figure.savefig(path, format="png", dpi=PNG_DPI, metadata={"Software": None})
        figure.savefig(path.with_suffix(".svg"), format="svg", metadata={"Date": None})
    return path
