"""Software design specification: one section per module of the locked runtime, from its source.

Each section is the module's docstring and its public interface - functions with their
signatures and docstrings, classes with their bases, fields and public methods, upper-case
constants - read with :mod:`ast` from the files themselves (nothing is imported, so reading
the design loads no model library). The text is what the code says about itself, so the SDS
changes when the code does.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

from .import_graph import installed_sources, parse_modules

RUNTIME_PACKAGE = "cxr_device.runtime"


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    text = f"{node.name}({ast.unparse(node.args)})"
    return text + (f" -> {ast.unparse(node.returns)}" if node.returns is not None else "")


_ROLE = re.compile(r":(?:py:)?(?:data|func|class|mod|meth|attr|obj|exc|const):`~?([^`]+)`")


def _doc(node) -> str:
    """The docstring with Sphinx roles (``:func:`x```) turned into plain code spans."""
    return _ROLE.sub(lambda m: f"`{m.group(1)}`", (ast.get_docstring(node) or "").strip())


def _decorators(node) -> list[str]:
    return [ast.unparse(d) for d in node.decorator_list]


def _function(node) -> dict:
    return {"name": node.name, "signature": _signature(node), "doc": _doc(node), "decorators": _decorators(node)}


def _class(node: ast.ClassDef) -> dict:
    fields = [{"name": n.target.id, "type": ast.unparse(n.annotation),
               "default": ast.unparse(n.value) if n.value is not None else None}
              for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
              and not n.target.id.startswith("_")]
    methods = [_function(n) for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and (not n.name.startswith("_") or n.name == "__init__")]
    return {"name": node.name, "bases": [ast.unparse(b) for b in node.bases], "doc": _doc(node),
            "decorators": _decorators(node), "fields": fields, "methods": methods}


def _constants(tree: ast.Module) -> list[dict]:
    out = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper() and value is not None:
                text = ast.unparse(value)
                out.append({"name": target.id, "value": text if len(text) <= 120 else text[:117] + "..."})
    return out


def design_sections(package: str = RUNTIME_PACKAGE, sources: Mapping[str, Path] | None = None) -> list[dict]:
    """One section per module of ``package`` (the package's own ``__init__`` first, then by
    name): ``{"module", "file", "doc", "constants", "functions", "classes"}``, public names only,
    in source order."""
    top = package.split(".")[0]
    sources = dict(sources or installed_sources((top,)))
    modules = parse_modules({top: sources[top]})
    chosen = [m for name, m in modules.items() if name == package or name.rsplit(".", 1)[0] == package]
    chosen.sort(key=lambda m: (m.name != package, m.name))
    root = Path(sources[top]).parent
    out = []
    for m in chosen:
        body = m.tree.body
        out.append({
            "module": m.name, "file": str(m.path.relative_to(root)), "doc": _doc(m.tree),
            "constants": _constants(m.tree),
            "functions": [_function(n) for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                          and not n.name.startswith("_")],
            "classes": [_class(n) for n in body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")],
        })
    return out


def undocumented(sections: list[dict]) -> list[str]:
    """Public modules, functions, classes and methods of the design without a docstring:
    ``module.name`` each (what the SDS cannot describe from the code)."""
    out = [s["module"] for s in sections if not s["doc"]]
    for s in sections:
        out += [f"{s['module']}.{f['name']}" for f in s["functions"] if not f["doc"]]
        for c in s["classes"]:
            if not c["doc"]:
                out.append(f"{s['module']}.{c['name']}")
            out += [f"{s['module']}.{c['name']}.{f['name']}" for f in c["methods"]
                    if not f["doc"] and f["name"] != "__init__"]
    return out
