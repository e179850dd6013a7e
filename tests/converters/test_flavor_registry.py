"""Flavors go through one registry keyed by config type: every config the CLI names has a
writer, export() dispatches on the config's type, and the router's selection is typed."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from bfexport.errors import BfexportError
from converters import FLAVORS, ExportConfig, export
from converters.onnx import REGISTRY, GraphWriter, flavor_named, flavor_of
from converters.onnx.router import RoutedWriter, Selection
from tests.conftest import tiny_model


def test_every_flavor_name_maps_to_a_registered_config() -> None:
    assert sorted(FLAVORS) == ["adaptive", "dense", "masked", "static", "trt-plugin"]
    for name, config in FLAVORS.items():
        entry = REGISTRY[config]
        assert entry.name == name and flavor_named(name) is entry
        assert issubclass(entry.writer, GraphWriter)
        assert issubclass(entry.writer, RoutedWriter) == entry.routed


def test_export_dispatches_on_the_config_type() -> None:
    @dataclass(frozen=True)
    class Unregistered(ExportConfig):
        flavor = "unregistered"

    with pytest.raises(BfexportError, match="unknown export config Unregistered"):
        export(tiny_model(), Unregistered())
    with pytest.raises(BfexportError, match="unknown flavor 'sparse'"):
        flavor_named("sparse")
    assert flavor_of(FLAVORS["masked"]()).computes_all_heads


def test_the_router_selection_is_typed() -> None:
    model = tiny_model()
    writer = REGISTRY[FLAVORS["adaptive"]].writer(model, FLAVORS["adaptive"]())
    assert isinstance(writer, RoutedWriter)
    writer.budget_inputs()
    g = writer.g
    h = g.input("h", 1, ["batch", "seq", model.config.d_model])
    pool = g.input("pool", 1, ["batch", 1, "seq"])
    selection = writer.route(0, h, pool)
    assert isinstance(selection, Selection) and [f.name for f in fields(Selection)] == ["k", "ranking", "active",
                                                                                          "selected"]
    produced = {name for node in g.nodes for name in node.output}
    assert {selection.k, selection.ranking, selection.active, selection.selected} <= produced
