"""Export configs: one small frozen dataclass per flavor; the registry maps each type to its writer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

from bfexport.names import KEY_HEADS

MIN_OPSET, MAX_OPSET = 17, 23


@dataclass(frozen=True)
class ExportConfig:
    flavor: ClassVar[str]  # --flavor and the bfexport.flavor metadata value

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


@dataclass(frozen=True)
class DenseExport(ExportConfig):
    """Ordinary multi-head attention with every head, no router."""

    flavor = "dense"


@dataclass(frozen=True)
class StaticExport(ExportConfig):
    """Ordinary attention over a fixed head set per layer, sliced at export time."""

    flavor = "static"

    heads: list[list[int]] = field(default_factory=list)  # per layer, the heads kept

    def metadata(self) -> dict[str, str]:
        return {KEY_HEADS: json.dumps(self.heads)}


@dataclass(frozen=True)
class TrtPluginExport(ExportConfig):
    """The adaptive graph with attention blocks as BudgetedAttention custom nodes (TensorRT plugin)."""

    flavor = "trt-plugin"
