"""The architecture diagram, drawn from the import graph (:mod:`.import_graph`), never by hand.

Layout (:func:`layout`): one column per package (a long one continued in the next, see :data:`MAX_COLUMNS`),
bottom of the import direction on the left (``cxr_device``, ``cxr_device.runtime``,
``validation``, ``fda_submission`` and its subpackages), one box per module; the modules inside the runtime boundary (what ``predict``,
``serve`` and ``assess`` load) come first in their column and sit on a shaded region. Thin
lines are imports (dashed: lazy, inside a function). The interfaces are a column of their own on
the left - the command line (every entry point) and the external formats and protocols the
modules use, each joined to the modules that import the library that speaks it
(:data:`INTERFACES`). Numbered orange arrows follow one DICOM from the network to the Structured
Report (:data:`DATA_FLOW`); :func:`data_flow_problems` says when a step names a module or a
definition that no longer exists, so a renamed function fails the check instead of leaving a
stale diagram.

Drawn in the figures' one style (:mod:`cxr_device.figure_style`) at the size of a landscape page,
where the documents place it; SVG (text kept as text) and PNG, the same graph giving the same bytes.
"""
from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from cxr_device.figure_style import (
    LANDSCAPE_HEIGHT,
    LANDSCAPE_WIDTH,
    new_figure,
    save,
    styled,
    wrapped,
)

#: One DICOM through the node: (module, name it defines, what happens there).
DATA_FLOW: tuple[tuple[str, str, str], ...] = (
    ("cxr_device.runtime.node", "DicomNode", "C-STORE received; stored before it is acknowledged"),
    ("cxr_device.runtime.pipeline", "DevicePipeline", "one input through every gate"),
    ("cxr_device.dicom_pixels", "read_dataset", "parsed once, Pixel Data deferred"),
    ("cxr_device.runtime.header_check", "check_dataset", "the bundle's locked input rules"),
    ("cxr_device.dicom_pixels", "dataset_pixels", "pixels decoded and trusted, or refused"),
    ("cxr_device.preprocessing", "to_tensor", "the one preprocessing"),
    ("cxr_device.runtime.inference", "Predictor", "model, calibration, locked threshold"),
    ("cxr_device.runtime.dicom_results", "score_to_dicom", "TID 1500 Structured Report in the source study"),
    ("cxr_device.runtime.node", "DicomNode", "SR forwarded to the PACS from outbox/"),
)
#: Interfaces and the libraries (top-level import names) through which modules use them.
INTERFACES: tuple[tuple[str, frozenset[str]], ...] = (
    ("DICOM network (DIMSE)", frozenset({"pynetdicom"})),
    ("TLS", frozenset({"ssl"})),
    ("DICOM files and objects", frozenset({"pydicom", "highdicom"})),
    ("PNG / JPEG files", frozenset({"PIL"})),
    ("bundle weights (safetensors)", frozenset({"safetensors"})),
    ("YAML files", frozenset({"yaml"})),
    ("CSV files", frozenset({"csv"})),
)
CLI = "command line (cxr-device)"
COLUMN_ORDER = ("cxr_device", "cxr_device.runtime", "validation", "fda_submission", "fda_submission.software",
                "fda_submission.security")
#: Columns the landscape page holds with module names at 7 pt (the interfaces' column included); a
#: package continues in a next column when the tallest would otherwise not fit the page's height.
MAX_COLUMNS, MIN_ROWS = 9, 20
BOX_W, BOX_H, ROW, COL = 3.25, 0.62, 0.8, 3.6
INTERFACE_H = 1.3  # an interface box holds two lines
RUNTIME_FILL, FLOW = "#d6eaf8", "#e67e22"


def data_flow_problems(graph: dict) -> list[str]:
    """Steps of :data:`DATA_FLOW` whose module is not in the graph or does not define the name."""
    modules = {m["name"]: m for m in graph["modules"]}
    out = []
    for number, (module, name, _) in enumerate(DATA_FLOW, 1):
        if module not in modules:
            out.append(f"data flow step {number}: module {module} is not in the import graph")
        elif name not in modules[module]["defines"]:
            out.append(f"data flow step {number}: {module} defines no {name}")
        elif not modules[module]["runtime"]:
            out.append(f"data flow step {number}: {module} is outside the runtime boundary")
    return out


def interfaces(graph: dict, commands: dict[str, str] | None = None) -> list[dict]:
    """Each interface with the modules that use it: ``{"name", "libraries", "modules", "commands"}``;
    the command line's modules are the entry points' (``commands``: name -> ``module:function``)."""
    uses = {m["name"]: set(graph["external"].get(m["name"], [])) | set(graph["stdlib"].get(m["name"], []))
            for m in graph["modules"]}
    out = []
    if commands:
        out.append({"name": CLI, "libraries": ["argparse"],
                    "modules": sorted({entry.split(":")[0] for entry in commands.values()}),
                    "commands": sorted(commands)})
    for name, libraries in INTERFACES:
        out.append({"name": name, "libraries": sorted(libraries), "commands": [],
                    "modules": sorted(m for m, used in uses.items() if used & libraries)})
    return out


def layout(graph: dict) -> dict:
    """Box positions: ``{"columns": [{"package", "x", "modules", "runtime_rows", "continued"}],
    "boxes": {module: (x, y)}, "height"}`` (y grows downwards from 0). A package's runtime modules
    come first. The rows per column are the fewest (from :data:`MIN_ROWS`) for which the
    packages, the long ones continued in a next column, fill at most :data:`MAX_COLUMNS`."""
    packages = [p for p in COLUMN_ORDER if p in graph["packages"]] + \
        sorted(p for p in graph["packages"] if p not in COLUMN_ORDER)
    by_package: dict[str, list[dict]] = {p: [] for p in packages}
    for m in graph["modules"]:
        by_package.setdefault(m["package"], []).append(m)
    counts = [max(len(modules), 1) for modules in by_package.values()]
    rows = next((r for r in range(MIN_ROWS, max(counts)) if sum(-(-n // r) for n in counts) < MAX_COLUMNS),
                max(counts))
    columns, boxes = [], {}
    for package, modules in by_package.items():
        ordered = sorted(modules, key=lambda m: (not m["runtime"], m["name"] != package, m["name"]))
        parts = -(-max(len(ordered), 1) // rows)
        per = -(-max(len(ordered), 1) // parts)  # the same number in each part
        for part in range(parts):
            chunk = ordered[part * per:(part + 1) * per]
            x = (len(columns) + 1) * COL
            for row, m in enumerate(chunk):
                boxes[m["name"]] = (x, row * ROW)
            columns.append({"package": package, "x": x, "modules": [m["name"] for m in chunk],
                            "runtime_rows": sum(1 for m in chunk if m["runtime"]), "continued": part > 0})
    height = max((len(c["modules"]) for c in columns), default=1) * ROW
    return {"columns": columns, "boxes": boxes, "height": height}


@styled
def draw_architecture(graph: dict, out_dir: str | Path, name: str = "architecture",
                      commands: dict[str, str] | None = None) -> dict[str, Path]:
    """Draw the diagram into ``out_dir`` as ``NAME.png`` and ``NAME.svg``; returns both paths. It
    is drawn at the size of a landscape page's text block (module names at 7 pt as printed)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    plan = layout(graph)
    boxes, height = plan["boxes"], plan["height"]
    links = interfaces(graph, commands)
    interface_y = {item["name"]: i * (height / max(len(links), 1)) for i, item in enumerate(links)}
    width = (len(plan["columns"]) + 1) * COL - COL / 2
    left, top = -BOX_W / 2 - 0.2, -2.6
    figure = new_figure(LANDSCAPE_WIDTH, LANDSCAPE_HEIGHT, layout=None)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(left, width)
    ax.set_ylim(height, top)
    ax.axis("off")
    unit = LANDSCAPE_WIDTH / (width - left)  # inches per unit across
    runtime_n = len(graph["runtime"])
    for column in plan["columns"]:
        if column["runtime_rows"]:
            ax.add_patch(Rectangle((column["x"] - BOX_W / 2 - 0.12, -ROW / 2), BOX_W + 0.24,
                                   column["runtime_rows"] * ROW, facecolor=RUNTIME_FILL, edgecolor="#2e86c1",
                                   linewidth=0.8, zorder=0))
        title = column["package"].replace(".", ".\n") + ("\n(continued)" if column["continued"] else "")
        ax.text(column["x"], -ROW / 2 - 0.15, title, ha="center", va="bottom", fontsize=7.5, fontweight="bold",
                linespacing=1.05)
    ax.text(0, -ROW / 2 - 0.15, "interfaces", ha="center", va="bottom", fontsize=7.5, fontweight="bold")
    ax.text(left + 0.1, top + 0.1, wrapped(
        f"Shaded: the runtime boundary, the {runtime_n} modules `predict`, `serve` and `assess` can load. Lines: "
        "imports (dashed: inside a function). Orange, numbered: one DICOM from the network to its Structured "
        "Report. Drawn from the source's import graph.", LANDSCAPE_WIDTH - 0.2, 7.5), fontsize=7.5, va="top")

    def anchor(module: str, towards: float) -> tuple[float, float]:
        x, y = boxes[module]
        return (x + BOX_W / 2, y) if towards > x else (x - BOX_W / 2, y) if towards < x else (x, y)

    for edge in graph["edges"]:
        if edge["source"] not in boxes or edge["target"] not in boxes:
            continue
        (sx, _), (tx, _) = boxes[edge["source"]], boxes[edge["target"]]
        start, end = anchor(edge["source"], tx), anchor(edge["target"], sx)
        inside = edge["source"] in graph["runtime"] and edge["target"] in graph["runtime"]
        style = "arc3,rad=0.35" if sx == tx else "arc3,rad=0.0"
        if sx == tx:
            start, end = (sx + BOX_W / 2, boxes[edge["source"]][1]), (tx + BOX_W / 2, boxes[edge["target"]][1])
        ax.add_patch(FancyArrowPatch(start, end, connectionstyle=style, arrowstyle="-|>", mutation_scale=4,
                                     linewidth=0.3, linestyle="--" if edge["lazy"] else "-",
                                     color="#2e4053" if inside else "#aab7b8", alpha=0.5 if inside else 0.3,
                                     zorder=1))
    for module, (x, y) in boxes.items():
        runtime = module in graph["runtime"]
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.02",
                                    facecolor="white", edgecolor="#1b4f72" if runtime else "#7f8c8d",
                                    linewidth=0.8 if runtime else 0.4, zorder=2))
        label = module.rsplit(".", 1)[-1] + ("/" if any(c["package"] == module for c in plan["columns"]) else "")
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=3)
    for item in links:
        y = interface_y[item["name"]]
        ax.add_patch(FancyBboxPatch((-BOX_W / 2, y - INTERFACE_H / 2), BOX_W, INTERFACE_H, boxstyle="round,pad=0.02",
                                    facecolor="#fef9e7", edgecolor="#b7950b", linewidth=0.8, zorder=2))
        ax.text(0, y, wrapped(item["name"], (BOX_W - 0.2) * unit, 7), ha="center", va="center", fontsize=7,
                linespacing=1.05, zorder=3)
        for module in item["modules"]:
            if module in boxes:
                mx, my = boxes[module]
                ax.add_patch(FancyArrowPatch((BOX_W / 2, y), (mx - BOX_W / 2, my), arrowstyle="-", linewidth=0.3,
                                             color="#b7950b", alpha=0.35, zorder=1))
    for number, ((a, _, _), (b, _, _)) in enumerate(pairwise(DATA_FLOW), 1):
        if a not in boxes or b not in boxes:
            continue
        (ax_, ay), (bx, by) = boxes[a], boxes[b]
        ax.add_patch(FancyArrowPatch((ax_, ay), (bx, by), connectionstyle="arc3,rad=0.25" if ax_ != bx else
                                     "arc3,rad=0.6", arrowstyle="-|>", mutation_scale=8, linewidth=1.4,
                                     color=FLOW, alpha=0.9, zorder=4, shrinkA=5, shrinkB=5))
        ax.text((ax_ + bx) / 2 + 0.15, (ay + by) / 2, str(number), color=FLOW, fontsize=8, fontweight="bold", zorder=5)
    png = save(figure, Path(out_dir) / f"{name}.png")
    return {"svg": png.with_suffix(".svg"), "png": png}


def flow_rows() -> list[dict]:
    """The data flow as the document lists it: ``{"step", "module", "name", "what"}``."""
    return [{"step": i, "module": m, "name": n, "what": w} for i, (m, n, w) in enumerate(DATA_FLOW, 1)]
