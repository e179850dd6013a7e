"""The export flavors as data: one frozen config dataclass per flavor, with what its graph
computes and needs as class facts, so no module compares flavor names. converters.onnx.registry
maps each config type to the writer of its graph; FLAVORS maps the names --flavor and the
bfexport.flavor metadata use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

from bfexport.errors import BfexportError
from bfexport.names import KEY_HEADS

MIN_OPSET, MAX_OPSET = 17, 23


@dataclass(frozen=True)
class ExportConfig:
    flavor: ClassVar[str]  # --flavor and the bfexport.flavor metadata value
    routed: ClassVar[bool] = True  # router in the graph: budget inputs, per-head weights; needs an adaptive checkpoint
    head_sets: ClassVar[bool] = False  # the file's metadata lists the fixed heads of each layer
    computes_all_heads: ClassVar[bool] = False  # every head is computed, whatever the router chose
    custom_op: ClassVar[bool] = False  # ONNX Runtime runs it only through bfexport.ort_custom_ops

    opset: int = 17
    fp16: bool = False

    def metadata(self) -> dict[str, str]:
        """Flavor-specific metadata_props the file carries besides config and flavor."""
        return {}


@dataclass(frozen=True)
class AdaptiveExport(ExportConfig):
    """Router in the graph; only each sample's selected heads are computed."""

    flavor = "adaptive"


@dataclass(frozen=True)
class MaskedExport(ExportConfig):
    """Router in the graph; every head computed, the unselected ones zeroed."""

    flavor = "masked"
    computes_all_heads = True


@dataclass(frozen=True)
class DenseExport(ExportConfig):
    """Ordinary multi-head attention with every head, no router."""

    flavor = "dense"
    routed, computes_all_heads = False, True


@dataclass(frozen=True)
class StaticExport(ExportConfig):
    """Ordinary attention over a fixed head set per layer, sliced at export time."""

    flavor = "static"
    routed, head_sets = False, True

    heads: list[list[int]] = field(default_factory=list)  # per layer, the heads kept

    def metadata(self) -> dict[str, str]:
        return {KEY_HEADS: json.dumps(self.heads)}


@dataclass(frozen=True)
class TrtPluginExport(ExportConfig):
    """The adaptive graph with attention blocks as BudgetedAttention custom nodes (TensorRT plugin)."""

    flavor = "trt-plugin"
    custom_op = True


FLAVORS: dict[str, type[ExportConfig]] = {config.flavor: config for config in (
    AdaptiveExport, MaskedExport, DenseExport, StaticExport, TrtPluginExport)}


def flavor_named(name: str) -> type[ExportConfig]:
    """The config type a file's bfexport.flavor metadata (or --flavor) names."""
    if name not in FLAVORS:
        raise BfexportError(f"unknown flavor {name!r} (expected one of {', '.join(FLAVORS)})")
    return FLAVORS[name]
