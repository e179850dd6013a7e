"""Flavors go through one registry keyed by config type: every config the CLI names has a
writer, export() dispatches on the config's type, the router's selection is typed, and no
other module compares flavor names, ladders over config types or subclasses a private writer."""

from __future__ import annotations

import ast
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from bfexport.errors import BfexportError
from bfexport.flavors import flavor_named
from converters import FLAVORS, ExportConfig, export
from converters.onnx import REGISTRY, GraphWriter
from converters.onnx.router import RoutedWriter, Selection
from tests.factories import tiny_model


def test_every_flavor_name_maps_to_a_registered_config() -> None:
    assert sorted(FLAVORS) == ["adaptive", "dense", "masked", "static", "trt-plugin"]
    assert set(REGISTRY) == set(FLAVORS.values())
    for name, config in FLAVORS.items():
        assert config.flavor == name and flavor_named(name) is config
        assert issubclass(REGISTRY[config], GraphWriter)
        assert issubclass(REGISTRY[config], RoutedWriter) == config.routed


def test_export_dispatches_on_the_config_type() -> None:
    @dataclass(frozen=True)
    class Unregistered(ExportConfig):
        flavor = "unregistered"

    with pytest.raises(BfexportError, match="unknown export config Unregistered"):
        export(tiny_model(), Unregistered())
    with pytest.raises(BfexportError, match="unknown flavor 'sparse'"):
        flavor_named("sparse")


def test_the_router_selection_is_typed() -> None:
    model = tiny_model()
    writer = REGISTRY[FLAVORS["adaptive"]](model, FLAVORS["adaptive"]())
    assert isinstance(writer, RoutedWriter)
    writer.budget_inputs()
    g = writer.g
    h = g.input("h", 1, ["batch", "seq", model.config.d_model])
    pool = g.input("pool", 1, ["batch", 1, "seq"])
    selection = writer.route(0, h, pool)
    assert isinstance(selection, Selection) and [f.name for f in fields(Selection)] == ["k", "ranking"]
    produced = {name for node in g.nodes for name in node.output}
    assert {selection.k, selection.ranking} <= produced


# ---- no module outside the registry spells flavor names or ladders over config types -------------
ROOT = Path(__file__).resolve().parents[2]
NAMES = set(FLAVORS)


def flavor_literals(node: ast.AST) -> bool:
    """A flavor name as a string constant, or a tuple/list/set holding one."""
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(flavor_literals(e) for e in node.elts)


def offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare) and any(flavor_literals(n) for n in (node.left, *node.comparators)):
            found.append(f"{node.lineno}: compares a flavor name")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
              and any(isinstance(n, ast.Name) and n.id.endswith("Export") for n in ast.walk(node.args[1]))):
            found.append(f"{node.lineno}: isinstance over export configs")
        elif isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id.startswith("_")
                                                    for b in node.bases):
            found.append(f"{node.lineno}: subclasses a private class")
    return found


def test_flavors_are_asked_through_the_registry() -> None:
    files = [p for package in ("bfexport", "converters", "calibration") for p in sorted((ROOT / package).rglob("*.py"))]
    found = {str(p.relative_to(ROOT)): offences(p) for p in files}
    assert {path: lines for path, lines in found.items() if lines} == {}
