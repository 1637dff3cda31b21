"""The context of the software documentation (document SW), gathered from the modules of this
package: :func:`software_documentation` returns plain data for the template, and
:func:`software_problems` what the consistency check reports about it.
"""
from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

from ..known_issues import unresolved
from ..security.threat_model import load_threat_model
from .history import version_history
from .import_graph import (
    ENTRY_POINT_GROUP,
    RUNTIME_COMMANDS,
    build_graph,
    installed_sources,
)
from .level import documentation_level
from .practices import development_practices
from .sds import design_sections, undocumented
from .srs import requirement_specs, spec_problems
from .testing_summary import level_problems, testing_summary

#: Figures this document adds to the package (drawn by :func:`draw_figures`).
FIGURES = ("architecture",)


def read_manifest(run_dir: str | Path) -> dict | None:
    """The run's manifest.json, or None when the run has none (a run made step by step)."""
    path = Path(run_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def software_documentation(context: dict, junit: str | Path | None = None) -> dict:
    """Everything document SW prints: ``{"level", "srs", "architecture", "sds", "practices",
    "history", "unresolved", "testing", "problems"}`` (plain data; ``testing`` None without a
    JUnit report)."""
    profile = context["profile"]
    sources = installed_sources()
    source = sources["cxr_device"]
    commands = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    graph = build_graph(sources, {c: commands[c] for c in RUNTIME_COMMANDS})
    manifest = read_manifest(context["run"]["path"])
    history = version_history(source, manifest)
    level = documentation_level(profile, context["hazards"])
    model = load_threat_model()
    sds = design_sections(sources=sources)
    tests_dir = Path(source).parent / "tests"
    from .architecture_figure import data_flow_problems, flow_rows, interfaces

    architecture = {
        "packages": [{"package": p, "n_modules": sum(1 for m in graph["modules"] if m["package"] == p),
                      "n_runtime": sum(1 for m in graph["modules"] if m["package"] == p and m["runtime"])}
                     for p in graph["packages"]],
        "n_modules": len(graph["modules"]), "n_edges": len(graph["edges"]),
        "n_lazy": sum(1 for e in graph["edges"] if e["lazy"]), "runtime": graph["runtime"],
        "commands": {c: {"entry": v["entry"], "handler": v["handler"], "n_modules": len(v["modules"]),
                         "external": sorted({t.split(".")[0] for t in v["external"]})}
                     for c, v in graph["commands"].items()},
        "interfaces": interfaces(graph, commands), "flow": flow_rows(), "graph": graph,
        "modules": [m for m in graph["modules"] if m["runtime"]]}
    problems = data_flow_problems(graph) + [f"{m}: no docstring (SDS)" for m in undocumented(sds)
                                            if m.count(".") <= 2] + level["problems"]
    problems += spec_problems(context["requirements"])
    if tests_dir.is_dir():
        problems += level_problems(tests_dir)
    return {"level": level,
            "srs": requirement_specs(context["requirements"], context["trace"], context["hazards"], model["controls"]),
            "architecture": architecture, "sds": sds,
            "practices": development_practices(source, profile, context["requirements"], history["end"]),
            "history": history, "unresolved": unresolved(context),
            "testing": testing_summary(junit, manifest) if junit else None,
            "problems": problems}


def software_problems(software: dict) -> list[str]:
    """What the consistency check reports about the software documentation: a stale data flow,
    a level the risk file contradicts, requirements without their structured fields, stale
    test-level entries. (Undocumented runtime modules are listed in the document, not refused.)"""
    return [p for p in software["problems"] if "(SDS)" not in p]


def draw_figures(context: dict, figures_dir: str | Path) -> dict[str, Path]:
    """Draw the architecture diagram into ``figures_dir``: figure key -> PNG path (the SVG beside it)."""
    from .architecture_figure import draw_architecture

    commands = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    paths = draw_architecture(context["software"]["architecture"]["graph"], figures_dir, commands=commands)
    return {"architecture": paths["png"]}
