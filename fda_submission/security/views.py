"""Security architecture views (``views.yaml``): the global system, multi-patient harm,
updatability and security use cases, with every control and threat they name checked against
the threat model, and the global system view drawn (zones as columns, nodes as boxes, flows as
numbered arrows listed in a table beside it) at the text width, in the figures' one style.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from cxr_device.errors import CxrDeviceError
from cxr_device.figure_style import FULL_WIDTH, new_figure, save, styled, wrapped
from cxr_device.yaml_io import load_yaml

VIEWS_FILE = "views.yaml"
SECTIONS = ("global_system", "multi_patient", "updatability", "use_cases")
BOX_W, BOX_H = 3.4, 1.0  # a node of the global view, in units of a zone's width (5)


def views_path() -> Path:
    return Path(str(resources.files("fda_submission") / "security" / VIEWS_FILE))


def load_views(path: str | Path | None = None) -> dict:
    """The four views as plain data; a missing section or a flow between unknown nodes is an error
    naming the file."""
    path = Path(path) if path else views_path()
    data = load_yaml(path, "security views") or {}
    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise CxrDeviceError(f"{path}: missing view(s) {', '.join(missing)}")
    system = data["global_system"]
    zones = {z["id"] for z in system["zones"]}
    nodes = {n["id"] for n in system["nodes"]}
    bad = [n["id"] for n in system["nodes"] if n["zone"] not in zones] + \
        [f"{f['from']}->{f['to']}" for f in system["flows"] if f["from"] not in nodes or f["to"] not in nodes]
    if bad:
        raise CxrDeviceError(f"{path}: global_system names unknown zones or nodes: {', '.join(bad)}")
    return {s: data[s] for s in SECTIONS}


def view_problems(views: dict, threat_model: dict) -> list[str]:
    """Control and threat ids the views name that the threat model does not hold."""
    controls = {c["id"] for c in threat_model["controls"]}
    threats = {t["id"] for t in threat_model["threats"]}
    items = [("global_system flow " + f"{f['from']}->{f['to']}", f) for f in views["global_system"]["flows"]]
    items += [(f"multi_patient {i}", v) for i, v in enumerate(views["multi_patient"], 1)]
    items += [(f"updatability {v['component']}", v) for v in views["updatability"]]
    items += [(f"use case {v['name']}", v) for v in views["use_cases"]]
    out = []
    for where, item in items:
        out += [f"{where}: {c} is not a control of the threat model" for c in item.get("controls", []) if c not in controls]
        out += [f"{where}: {t} is not a threat of the threat model" for t in item.get("threats", []) if t not in threats]
    return out


@styled
def draw_global_view(views: dict, path: str | Path) -> Path:
    """Draw the global system view at the text width (zones left to right, flows numbered as
    listed): ``path`` (PNG) and the SVG beside it."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    system = views["global_system"]
    zones = system["zones"]
    column = {z["id"]: i for i, z in enumerate(zones)}
    position = {n["id"]: (column[n["zone"]] * 5.0 + 2.5, int(n.get("row", i)) * 2.2 + 1.8)
                for i, n in enumerate(system["nodes"])}
    height = max(y for _, y in position.values()) + 1.4
    inch = FULL_WIDTH / (len(zones) * 5.0)  # inches per unit, the same on both axes
    figure = new_figure(FULL_WIDTH, height * inch + 0.1, layout=None)
    ax = figure.add_axes((0.005, 0.005, 0.99, 0.99))
    ax.set_xlim(0, len(zones) * 5.0)
    ax.set_ylim(height, -0.2)
    ax.axis("off")
    for z in zones:
        x = column[z["id"]] * 5.0
        ax.add_patch(Rectangle((x + 0.1, 0.0), 4.8, height - 0.2, facecolor="#f4f6f7", edgecolor="#566573",
                               linestyle="--", linewidth=0.8))
        ax.text(x + 2.5, 0.55, wrapped(z["name"], 4.4 * inch, 8, em=0.68), ha="center", va="center", fontsize=8,
                fontweight="bold")
    for n in system["nodes"]:
        x, y = position[n["id"]]
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.05",
                                    facecolor="white", edgecolor="#1b4f72", linewidth=0.9))
        ax.text(x, y, wrapped(n["name"], (BOX_W - 0.3) * inch, 7), ha="center", va="center", fontsize=7,
                linespacing=1.1)
    for number, f in enumerate(system["flows"], 1):
        (x1, y1), (x2, y2) = _ends(position[f["from"]], position[f["to"]])
        colour = "#b03a2e" if not f["controls"] else "#1e8449"
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=9, linewidth=1.0,
                                     color=colour, shrinkA=1, shrinkB=1))
        ax.text((x1 + x2) / 2, (y1 + y2) / 2, str(number), fontsize=7.5, fontweight="bold", color=colour, ha="center", va="center",
                bbox={"boxstyle": "circle,pad=0.15", "facecolor": "white", "edgecolor": colour, "linewidth": 0.6})
    return save(figure, path)


def _ends(a: tuple[float, float], b: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where the arrow from the box centred at ``a`` to the one at ``b`` starts and ends: on the
    facing sides (left/right between zones, bottom/top within one), so that it never crosses a
    box's text, and off the middle by the direction, so that two flows between the same boxes
    in opposite directions run side by side."""
    (x1, y1), (x2, y2) = a, b
    if x1 != x2:
        side, shift = (BOX_W / 2, 0.2) if x2 > x1 else (-BOX_W / 2, -0.2)
        return (x1 + side, y1 + shift), (x2 - side, y2 + shift)
    side, shift = (BOX_H / 2, 0.4) if y2 > y1 else (-BOX_H / 2, -0.4)
    return (x1 + shift, y1 + side), (x2 + shift, y2 - side)
