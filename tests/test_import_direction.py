"""Imports run one way: bfexport's ground floor <- converters <- calibration <- bfexport.cli and bfexport.benchmark.

Reads every import in bfexport/, converters/ and calibration/ from the source (AST, imports
inside functions included, so a lazy import cannot hide a cycle) and fails on an import that
goes up a floor or on a cycle between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Set as AbstractSet
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bfexport", "converters", "calibration")

# Known exceptions, each (importer, imported): none today. Each would exempt the import and the
# package __init__ modules it runs.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[tuple[str, str]] = set()


def floor(module: str) -> int:
    if any(module == top or module.startswith(top + ".") for top in ("bfexport.cli", "bfexport.benchmark")):
        return 3  # the commands and the bench harness sit above calibration
    return {"bfexport": 0, "converters": 1, "calibration": 2}[module.split(".")[0]]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(exempt: AbstractSet[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
    """module -> the project modules it imports (`from a import b` counts as a.b when b is a
    module). Importing a.b.c also runs a/__init__ and a/b/__init__: those count too, except the
    importer's own packages, which are already being imported (unless it imports from them)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
        targets = {t for t in targets if t in known and (name, t) not in exempt}
        parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        graph[name] = (targets | {p for p in parents if p in known} - own) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_upward_imports() -> None:
    graph = import_graph(KNOWN_UPWARD)
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if floor(b) > floor(a))
    assert upward == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(KNOWN_UPWARD | KNOWN_CYCLES)) == []


def test_the_graph_is_read() -> None:
    """Lazy imports count: the plugin imports its kernel inside a function."""
    graph = import_graph()
    assert "converters.kernels.budgeted_attention" in graph["converters.tensorrt.plugin"]
    assert all(b in graph[a] for a, b in KNOWN_UPWARD | KNOWN_CYCLES)  # each exception is still there
