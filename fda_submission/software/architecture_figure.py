"""The architecture diagram, drawn from the import graph (:mod:`.import_graph`), never by hand.

Layout (:func:`layout`): one column per package, bottom of the import direction on the left
(``cxr_device``, ``cxr_device.runtime``, ``validation``, ``fda_submission`` and its
subpackages), one box per module; the modules inside the runtime boundary (what ``predict``,
``serve`` and ``assess`` load) come first in their column and sit on a shaded region. Thin
lines are imports (dashed: lazy, inside a function). The interfaces are a column of their own on
the left - the command line (every entry point) and the external formats and protocols the
modules use, each joined to the modules that import the library that speaks it
(:data:`INTERFACES`). Numbered orange arrows follow one DICOM from the network to the Structured
Report (:data:`DATA_FLOW`); :func:`data_flow_problems` says when a step names a module or a
definition that no longer exists, so a renamed function fails the check instead of leaving a
stale diagram.

SVG (text kept as text, fixed hash salt, no date) and PNG; the same graph gives the same bytes.
"""
from __future__ import annotations

from itertools import pairwise
from pathlib import Path

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
BOX_W, BOX_H, ROW, COL = 2.5, 0.62, 0.8, 3.6
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
    """Box positions: ``{"columns": [{"package", "x", "modules"}], "boxes": {module: (x, y)},
    "runtime_rows": {package: n}, "height"}`` (y grows downwards from 0)."""
    packages = [p for p in COLUMN_ORDER if p in graph["packages"]] + \
        sorted(p for p in graph["packages"] if p not in COLUMN_ORDER)
    by_package: dict[str, list[dict]] = {p: [] for p in packages}
    for m in graph["modules"]:
        by_package.setdefault(m["package"], []).append(m)
    columns, boxes, runtime_rows = [], {}, {}
    for index, package in enumerate(packages):
        ordered = sorted(by_package[package], key=lambda m: (not m["runtime"], m["name"] != package, m["name"]))
        x = (index + 1) * COL
        for row, m in enumerate(ordered):
            boxes[m["name"]] = (x, row * ROW)
        runtime_rows[package] = sum(1 for m in ordered if m["runtime"])
        columns.append({"package": package, "x": x, "modules": [m["name"] for m in ordered]})
    height = max((len(c["modules"]) for c in columns), default=1) * ROW
    return {"columns": columns, "boxes": boxes, "runtime_rows": runtime_rows, "height": height}


def draw_architecture(graph: dict, out_dir: str | Path, name: str = "architecture",
                      commands: dict[str, str] | None = None) -> dict[str, Path]:
    """Draw the diagram into ``out_dir`` as ``NAME.svg`` and ``NAME.png``; returns both paths."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    plan = layout(graph)
    boxes, height = plan["boxes"], plan["height"]
    links = interfaces(graph, commands)
    interface_y = {item["name"]: i * (height / max(len(links), 1)) for i, item in enumerate(links)}
    width = (len(plan["columns"]) + 1) * COL + BOX_W
    scale = 0.5  # inches per unit, the same on both axes
    figure = Figure(figsize=(max(10.0, (width + BOX_W / 2 + 0.4) * scale), max(6.0, (height + 2.8) * scale)))
    ax = figure.add_axes((0.01, 0.01, 0.98, 0.93))
    ax.set_xlim(-BOX_W / 2 - 0.4, width)
    ax.set_ylim(height + 0.6, -2.2)
    ax.axis("off")
    runtime_n = len(graph["runtime"])
    for column in plan["columns"]:
        rows = plan["runtime_rows"][column["package"]]
        if rows:
            ax.add_patch(Rectangle((column["x"] - BOX_W / 2 - 0.15, -ROW / 2), BOX_W + 0.3, rows * ROW,
                                   facecolor=RUNTIME_FILL, edgecolor="#2e86c1", linewidth=1.0, zorder=0))
        ax.text(column["x"], -1.0, column["package"], ha="center", va="center", fontsize=9, fontweight="bold")
    ax.text(0, -1.0, "interfaces", ha="center", va="center", fontsize=9, fontweight="bold")
    ax.text(-BOX_W / 2 - 0.3, -1.85, f"Shaded: the runtime boundary, the {runtime_n} modules `predict`, `serve` and "
            "`assess` can load. Lines: imports (dashed: inside a function). Orange, numbered: one DICOM from the "
            "network to its Structured Report. Drawn from the source's import graph.", fontsize=8, va="center")

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
        ax.add_patch(FancyArrowPatch(start, end, connectionstyle=style, arrowstyle="-|>", mutation_scale=5,
                                     linewidth=0.35, linestyle="--" if edge["lazy"] else "-",
                                     color="#2e4053" if inside else "#aab7b8", alpha=0.55 if inside else 0.35,
                                     zorder=1))
    for module, (x, y) in boxes.items():
        runtime = module in graph["runtime"]
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.02",
                                    facecolor="white", edgecolor="#1b4f72" if runtime else "#7f8c8d",
                                    linewidth=0.9 if runtime else 0.5, zorder=2))
        label = module.rsplit(".", 1)[-1] + ("/" if any(c["package"] == module for c in plan["columns"]) else "")
        ax.text(x, y, label, ha="center", va="center", fontsize=6.5, zorder=3)
    for item in links:
        y = interface_y[item["name"]]
        ax.add_patch(FancyBboxPatch((-BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.02",
                                    facecolor="#fef9e7", edgecolor="#b7950b", linewidth=0.8, zorder=2))
        ax.text(0, y, item["name"], ha="center", va="center", fontsize=6, zorder=3)
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
                                     "arc3,rad=0.6", arrowstyle="-|>", mutation_scale=9, linewidth=1.6,
                                     color=FLOW, alpha=0.9, zorder=4, shrinkA=6, shrinkB=6))
        ax.text((ax_ + bx) / 2 + 0.15, (ay + by) / 2, str(number), color=FLOW, fontsize=8, fontweight="bold", zorder=5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"svg": out / f"{name}.svg", "png": out / f"{name}.png"}
    with matplotlib.rc_context({"svg.hashsalt": "cxr-device-architecture", "svg.fonttype": "none"}):
        figure.savefig(paths["svg"], format="svg", metadata={"Date": None})
        figure.savefig(paths["png"], format="png", dpi=110, metadata={"Software": None})
    return paths


def flow_rows() -> list[dict]:
    """The data flow as the document lists it: ``{"step", "module", "name", "what"}``."""
    return [{"step": i, "module": m, "name": n, "what": w} for i, (m, n, w) in enumerate(DATA_FLOW, 1)]
