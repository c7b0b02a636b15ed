"""fastasgi's import graph: no circles, and no layer imports a layer above it.

The graph is read from the source with :mod:`ast` (``.py``) and a regular
expression (Cython ``.pyx`` / ``.pxd``), so it needs no import.  Every import
counts, also one inside a function: an import moved into a function to dodge a
circle is still a circle.  Imports under ``if TYPE_CHECKING:`` do not run and are
left out (the server names ``Config`` in annotations that way).

:data:`LAYERS` is the layer order, written once, here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastasgi"

# Lowest first.  A module may import modules of its own layer and of the layers below.
# A module belongs to the entry that names it or its closest package; "fastasgi" names
# the package's own __init__ only.
LAYERS: tuple[tuple[str, ...], ...] = (
    # leaves: errors and constants every layer shares, the one reader of the
    # environment flag, the version, the setting declarations, log formatters, systemd's
    # socket activation and notify protocols
    (
        "fastasgi.errors",
        "fastasgi._compat",
        "fastasgi._version",
        "fastasgi.importer",
        "fastasgi.logging",
        "fastasgi.settings",
        "fastasgi.reload_patterns",
        "fastasgi.systemd",
    ),
    # non-hot helpers shared by the request cycle and the WebSocket protocols; sockets;
    # the metrics layout and its scrape side (prometheus_client is imported lazily);
    # sending files (the pathsend / zerocopysend extensions)
    (
        "fastasgi.connection",
        "fastasgi.proxy_trust",
        "fastasgi.sockets",
        "fastasgi.accesslog",
        "fastasgi.metrics",
        "fastasgi.filesend",
    ),
    # the request cycle, parser and framing (compiled and pure) and their picker
    ("fastasgi._speedups",),
    # what Config loads: protocol factories, lifespan, app adapters, event loops
    ("fastasgi.protocols", "fastasgi.lifespan", "fastasgi.middleware", "fastasgi.loops"),
    ("fastasgi.server",),
    ("fastasgi.config",),
    ("fastasgi.supervisors", "fastasgi.workers"),
    ("fastasgi.cli", "fastasgi.__main__", "fastasgi"),
)

# Which implementation set runs is known to the picker only: from outside
# fastasgi._speedups, the package itself is the one module that may be imported.
PICKER = "fastasgi._speedups"

_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\s+([\w, ]+)|c?import\s+([\w.]+))", re.MULTILINE)


def module_names(root: Path) -> dict[str, list[Path]]:
    """Dotted name -> its files (a .pyx and its .pxd are one module), for the package at ``root``."""
    names: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".pyx", ".pxd") or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.setdefault(".".join(parts), []).append(path)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every import that runs."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            found.append((base, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    modules = module_names(root)
    top = root.name

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, paths in modules.items():
        imports: list[tuple[str, list[str]]] = []
        for path in paths:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".py":
                imports += _imports(ast.parse(text, str(path)), name, path.name == "__init__.py")
            else:
                imports += [
                    (m.group(1), [n.split()[0] for n in m.group(2).split(",") if n.strip()])
                    if m.group(1)
                    else (m.group(3), [])
                    for m in _CYTHON_IMPORT.finditer(text)
                ]
        for base, names in imports:
            if base != top and not base.startswith(top + "."):
                continue
            # `from pkg import sub` imports the module pkg.sub; `from mod import attr`, mod
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            if len(targets) < len(names) or not names:
                targets.append(base)
            for target in targets:
                resolved = known(target)
                if resolved is not None and resolved != name:
                    graph[name].add(resolved)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching entry, layer)
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or (entry != "fastasgi" and module.startswith(entry + "."))
            if matches and (best is None or len(entry) > best[0]):
                best = (len(entry), level)
    return None if best is None else best[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    if not PACKAGE.is_dir():
        pytest.skip("no fastasgi/ source tree here")
    return import_graph(PACKAGE)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert find_cycles(graph) == []


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    assert [m for m in sorted(graph) if layer_of(m) is None] == [], "add the new module to LAYERS"


def test_no_import_reaches_a_higher_layer(graph: dict[str, set[str]]) -> None:
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if (layer_of(target) or 0) > (layer_of(source) or 0)
    ]
    assert upward == []


def test_only_the_picker_is_imported_from_outside_speedups(graph: dict[str, set[str]]) -> None:
    named = [
        f"{source} imports {target}"
        for source, targets in sorted(graph.items())
        if not source.startswith(PICKER)
        for target in sorted(targets)
        if target.startswith(PICKER + ".")
    ]
    assert named == [], f"ask {PICKER} (load(), active, tag_of()) instead"


def test_the_walk_sees_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """The checker itself: a circle closed inside a function is found; a TYPE_CHECKING import is not one."""
    pkg = tmp_path / "fastasgi"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import low\n")
    (pkg / "sub" / "low.py").write_text("def f():\n    from fastasgi.high import X\n")
    (pkg / "high.py").write_text(
        "from typing import TYPE_CHECKING\nfrom fastasgi.sub.low import f\nif TYPE_CHECKING:\n    from fastasgi import typed\nX = 1\n"
    )
    (pkg / "typed.py").write_text("import fastasgi.high\n")
    graph = import_graph(pkg)
    assert graph["fastasgi.sub"] == {"fastasgi.sub.low"}
    assert graph["fastasgi.high"] == {"fastasgi.sub.low"}
    assert find_cycles(graph) == [["fastasgi.high", "fastasgi.sub.low"]]
