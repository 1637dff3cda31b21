"""The import graph of the product's own packages, read from their source with :mod:`ast`.

Nothing here is drawn or listed by hand: every module of ``cxr_device``, ``validation`` and
``fda_submission`` (as installed, or any package tree given) is parsed, and every ``import``
statement becomes an edge - module-level imports, and *lazy* imports inside functions, which
the commands use to keep start-up light (``serve`` imports pynetdicom only when it starts).
Imports under ``if TYPE_CHECKING:`` never run and are left out.

The **runtime boundary** is what the device's runtime commands load (:data:`RUNTIME_COMMANDS`:
``predict``, ``serve``, ``assess``). Each command is an entry point of the ``cxr_device.commands``
group; the function it names registers a handler (``set_defaults(handler=...)``). The boundary
is the module of the entry point with the imports of the registering function, of the handler
and of the functions of the same module they call (transitively), then every module those
reach, whole: once a module is loaded, any of its functions may run, so its lazy imports count.
The boundary is therefore a superset of what one invocation loads (e.g. the EfficientNet-Lite0
packages, loaded only for a bundle of that architecture).
"""
from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import util
from importlib.metadata import entry_points
from pathlib import Path

#: The product's packages, bottom to top of the import direction.
PACKAGES = ("cxr_device", "validation", "fda_submission")
#: The commands that make up the device's runtime (what a hospital runs).
RUNTIME_COMMANDS = ("predict", "serve", "assess")
ENTRY_POINT_GROUP = "cxr_device.commands"


@dataclass(frozen=True)
class Import:
    """One import statement: ``source`` imports ``target`` (absolute module name)."""

    source: str
    target: str
    line: int
    lazy: bool  # inside a function or method
    function: str | None  # the enclosing function's qualified name, for a lazy import


@dataclass(frozen=True)
class Module:
    """One parsed module of the product."""

    name: str
    path: Path
    is_package: bool
    tree: ast.Module


def installed_sources(packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Package name -> the folder its source is imported from (found without importing it)."""
    out = {}
    for name in packages:
        spec = util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"package {name} is not importable here")
        out[name] = Path(next(iter(spec.submodule_search_locations)))
    return out


@functools.lru_cache(maxsize=1024)
def _parse(path: Path, mtime_ns: int, size: int) -> ast.Module:
    """One file's syntax tree; cached on its path, modification time and size (a changed file is
    parsed again)."""
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def parse_modules(sources: Mapping[str, Path]) -> dict[str, Module]:
    """Every ``.py`` file under each package folder, parsed, by dotted module name."""
    modules: dict[str, Module] = {}
    for package, root in sources.items():
        for path in sorted(Path(root).rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            parts = [package, *relative.parts]
            if "__pycache__" in parts or not all(p.isidentifier() for p in parts):
                continue
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            stat = path.stat()
            modules[name] = Module(name, path, is_package, _parse(path, stat.st_mtime_ns, stat.st_size))
    return modules


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: Module, known: set[str]):
        self.module, self.known = module, known
        self.stack: list[str] = []
        self.found: list[Import] = []

    def _add(self, target: str, line: int) -> None:
        function = ".".join(self.stack) if self.stack else None
        self.found.append(Import(self.module.name, target, line, function is not None, function))

    def visit_FunctionDef(self, node) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:  # only the else branch runs
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, node.module, node.level)
        if base == "__future__":
            return
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            # ``from pkg import module`` imports the module; ``from module import name`` the module
            self._add(candidate if candidate in self.known else base, node.lineno)


def _absolute(module: Module, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    parts = module.name.split(".")
    base = parts if module.is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def module_imports(modules: Mapping[str, Module]) -> list[Import]:
    """Every import statement of every module, in module then line order."""
    known = set(modules)
    out: list[Import] = []
    for name in sorted(modules):
        visitor = _ImportVisitor(modules[name], known)
        visitor.visit(modules[name].tree)
        out.extend(sorted(visitor.found, key=lambda i: (i.line, i.target)))
    return out


def first_party(target: str, modules: Mapping[str, Module]) -> str | None:
    """The product module an import target names (the longest dotted prefix that is one), or None."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _parents(name: str, modules: Mapping[str, Module]) -> list[str]:
    """The packages Python runs before ``name`` (``a`` and ``a.b`` for ``a.b.c``)."""
    parts = name.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in modules]


def _functions(tree: ast.Module) -> dict[str, ast.AST]:
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def handler_of(module: Module, function: str) -> str | None:
    """The handler a command function registers: ``p.set_defaults(handler=NAME)`` in its body."""
    node = _functions(module.tree).get(function)
    for call in ast.walk(node) if node is not None else []:
        if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "set_defaults":
            for keyword in call.keywords:
                if keyword.arg == "handler" and isinstance(keyword.value, ast.Name):
                    return keyword.value.id
    return None


def _called_here(module: Module, names: set[str]) -> set[str]:
    """``names`` and the module's functions they call by name, transitively."""
    functions = _functions(module.tree)
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        todo += [c.func.id for c in ast.walk(functions[name]) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
    return seen


def command_entry_points(commands: Iterable[str] = RUNTIME_COMMANDS) -> dict[str, str]:
    """Command -> ``module:function`` of its installed entry point."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    missing = [c for c in commands if c not in found]
    if missing:
        raise LookupError(f"no {ENTRY_POINT_GROUP} entry point for {', '.join(missing)}")
    return {c: found[c] for c in commands}


def command_closure(modules: Mapping[str, Module], imports: list[Import], entry: str) -> dict:
    """What one command can load: ``{"entry", "handler", "modules", "external"}`` (product
    modules and third-party import targets - the standard library left out -, sorted)."""
    module_name, function = entry.split(":")
    module = modules[module_name]
    handler = handler_of(module, function)
    used = _called_here(module, {function} | ({handler} if handler else set()))
    by_source: dict[str, list[Import]] = {}
    for i in imports:
        by_source.setdefault(i.source, []).append(i)
    start = [i for i in by_source.get(module_name, [])
             if not i.lazy or (i.function or "").split(".")[0] in used]
    reached, external = {module_name, *_parents(module_name, modules)}, set()
    todo = list(start)
    while todo:
        i = todo.pop()
        target = first_party(i.target, modules)
        if target is None:
            if i.target.split(".")[0] not in sys.stdlib_module_names:
                external.add(i.target)
            continue
        for name in [*_parents(target, modules), target]:
            if name not in reached:
                reached.add(name)
                todo += by_source.get(name, [])
    return {"entry": entry, "handler": handler, "modules": sorted(reached), "external": sorted(external)}


def build_graph(sources: Mapping[str, Path] | None = None,
                entries: Mapping[str, str] | None = None) -> dict:
    """The import graph as plain data.

    ``sources``: package name -> folder (default: the installed product, :func:`installed_sources`);
    ``entries``: command -> ``module:function`` (default: the installed entry points of
    :data:`RUNTIME_COMMANDS`). Returns ``{"packages", "modules", "edges", "external", "stdlib",
    "commands", "runtime"}``: each module with its package (the folder it sits in), file, first
    docstring line and the names it defines at top level; each first-party edge once per
    (source, target, lazy); the third-party and standard-library top-level names each module
    imports; each command's closure; and ``runtime``, the union of the commands' modules.
    """
    sources = dict(sources or installed_sources())
    modules = parse_modules(sources)
    imports = module_imports(modules)
    entries = dict(entries or command_entry_points())
    roots = {name: Path(root) for name, root in sources.items()}
    edges, external, stdlib = set(), {}, {}
    for i in imports:
        target = first_party(i.target, modules)
        if target is None:
            top = i.target.split(".")[0]
            (stdlib if top in sys.stdlib_module_names else external).setdefault(i.source, set()).add(top)
        elif target != i.source:
            edges.add((i.source, target, i.lazy))
    commands = {c: command_closure(modules, imports, e) for c, e in sorted(entries.items())}
    runtime = sorted({m for c in commands.values() for m in c["modules"]})
    return {
        "packages": sorted({(m.name if m.is_package else package_of(m.name)) for m in modules.values()}),
        "modules": [{"name": m.name, "package": package_of(m.name) if not m.is_package else m.name,
                     "file": str(m.path.relative_to(roots[m.name.split(".")[0]].parent)),
                     "doc": (ast.get_docstring(m.tree) or "").strip().split("\n")[0],
                     "defines": defined_names(m.tree),
                     "runtime": m.name in runtime} for m in (modules[k] for k in sorted(modules))],
        "edges": [{"source": s, "target": t, "lazy": lazy} for s, t, lazy in sorted(edges)],
        "external": {k: sorted(v) for k, v in sorted(external.items())},
        "stdlib": {k: sorted(v) for k, v in sorted(stdlib.items())},
        "commands": commands,
        "runtime": runtime,
    }


def defined_names(tree: ast.Module) -> list[str]:
    """The functions, classes and upper-case constants a module defines at top level, sorted."""
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return sorted(names)


def package_of(module: str) -> str:
    """The column a module belongs to: its parent package (``cxr_device.runtime`` for
    ``cxr_device.runtime.node``), the top-level package for a top-level module."""
    return module.rsplit(".", 1)[0] if "." in module else module


def runtime_import_targets(graph: dict) -> list[str]:
    """Every module a runtime command can import: the product's runtime modules and the
    third-party modules they name (stdlib left out), sorted: what :mod:`fda_submission.security.sbom`
    imports to measure the runtime."""
    third = {t for c in graph["commands"].values() for t in c["external"]}
    return sorted(set(graph["runtime"]) | third)
