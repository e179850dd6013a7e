"""The flavor registry: one explicit dict from export-config type to its graph writer and the
facts other modules ask about a flavor (so none of them compares flavor names)."""

from __future__ import annotations

from dataclasses import dataclass

from bfexport.errors import BfexportError
from converters.onnx.adaptive import AdaptiveWriter
from converters.onnx.configs import (
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
)
from converters.onnx.fixed import DenseWriter, StaticWriter
from converters.onnx.masked import MaskedWriter
from converters.onnx.trunk import GraphWriter
from converters.onnx.trt_plugin import TrtPluginWriter


@dataclass(frozen=True)
class Flavor:
    config: type[ExportConfig]
    writer: type[GraphWriter]
    routed: bool  # router in the graph: budget inputs, per-head weights, needs an adaptive checkpoint
    head_sets: bool = False  # the file's metadata lists the fixed heads of each layer
    computes_all_heads: bool = False  # every head is computed, whatever the router chose
    custom_op: bool = False  # ONNX Runtime runs it only through converters.ort_custom_ops

    @property
    def name(self) -> str:
        return self.config.flavor


REGISTRY: dict[type[ExportConfig], Flavor] = {flavor.config: flavor for flavor in (
    Flavor(AdaptiveExport, AdaptiveWriter, routed=True),
    Flavor(MaskedExport, MaskedWriter, routed=True, computes_all_heads=True),
    Flavor(DenseExport, DenseWriter, routed=False, computes_all_heads=True),
    Flavor(StaticExport, StaticWriter, routed=False, head_sets=True),
    Flavor(TrtPluginExport, TrtPluginWriter, routed=True, custom_op=True),
)}
FLAVORS: dict[str, type[ExportConfig]] = {config.flavor: config for config in REGISTRY}  # what --flavor maps


def flavor_of(config: ExportConfig) -> Flavor:
    flavor = REGISTRY.get(type(config))
    if flavor is None:
        raise BfexportError(f"unknown export config {type(config).__name__}")
    return flavor


def flavor_named(name: str) -> Flavor:
    """The flavor a file's bfexport.flavor metadata (or --flavor) names."""
    if name not in FLAVORS:
        raise BfexportError(f"unknown flavor {name!r} (expected one of {', '.join(FLAVORS)})")
    return REGISTRY[FLAVORS[name]]
