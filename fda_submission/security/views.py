"""Security architecture views (``views.yaml``): the global system, multi-patient harm,
updatability and security use cases, with every control and threat they name checked against
the threat model, and the global system view drawn (zones as columns, nodes as boxes, flows as
numbered arrows listed in a table beside it).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from cxr_device.errors import CxrDeviceError
from cxr_device.yaml_io import load_yaml

VIEWS_FILE = "views.yaml"
SECTIONS = ("global_system", "multi_patient", "updatability", "use_cases")


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


def draw_global_view(views: dict, path: str | Path) -> Path:
    """Draw the global system view as a PNG (zones left to right, flows numbered as listed)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    system = views["global_system"]
    zones = system["zones"]
    column = {z["id"]: i for i, z in enumerate(zones)}
    position = {n["id"]: (column[n["zone"]] * 5.0 + 2.5, int(n.get("row", i)) * 2.2 + 1.6)
                for i, n in enumerate(system["nodes"])}
    height = max(y for _, y in position.values()) + 1.4
    figure = Figure(figsize=(len(zones) * 3.6, height * 0.75 + 0.6))
    ax = figure.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, len(zones) * 5.0)
    ax.set_ylim(height, -0.2)
    ax.axis("off")
    for z in zones:
        x = column[z["id"]] * 5.0
        ax.add_patch(Rectangle((x + 0.1, 0.0), 4.8, height - 0.2, facecolor="#f4f6f7", edgecolor="#566573",
                               linestyle="--", linewidth=0.8))
        ax.text(x + 2.5, 0.45, z["name"], ha="center", va="center", fontsize=8, fontweight="bold")
    for n in system["nodes"]:
        x, y = position[n["id"]]
        ax.add_patch(FancyBboxPatch((x - 2.0, y - 0.45), 4.0, 0.9, boxstyle="round,pad=0.05", facecolor="white",
                                    edgecolor="#1b4f72", linewidth=0.9))
        ax.text(x, y, n["name"], ha="center", va="center", fontsize=6.5, wrap=True)
    rad = 0.15
    for number, f in enumerate(system["flows"], 1):
        (x1, y1), (x2, y2) = position[f["from"]], position[f["to"]]
        colour = "#b03a2e" if not f["controls"] else "#1e8449"
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=10, linewidth=1.1,
                                     color=colour, shrinkA=20, shrinkB=20, connectionstyle=f"arc3,rad={rad}"))
        # the curve's middle (quadratic Bezier at t = 1/2; the y axis points down)
        lx, ly = (x1 + x2) / 2 - rad * (y2 - y1) / 2, (y1 + y2) / 2 + rad * (x2 - x1) / 2
        ax.text(lx, ly, str(number), fontsize=8, fontweight="bold", color=colour, ha="center", va="center",
                bbox={"boxstyle": "circle,pad=0.15", "facecolor": "white", "edgecolor": colour, "linewidth": 0.6})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120, metadata={"Software": None})
    return path
