"""The flavor registry: one explicit dict from export-config type to the writer of its graph."""

from __future__ import annotations

from bfexport.errors import BfexportError
from bfexport.flavors import AdaptiveExport, DenseExport, ExportConfig, MaskedExport, StaticExport, TrtPluginExport
from converters.onnx.adaptive import AdaptiveWriter
from converters.onnx.fixed import DenseWriter, StaticWriter
from converters.onnx.masked import MaskedWriter
from converters.onnx.trt_plugin import TrtPluginWriter
from converters.onnx.trunk import GraphWriter

REGISTRY: dict[type[ExportConfig], type[GraphWriter]] = {
    AdaptiveExport: AdaptiveWriter,
    MaskedExport: MaskedWriter,
    DenseExport: DenseWriter,
    StaticExport: StaticWriter,
    TrtPluginExport: TrtPluginWriter,
}


def writer_for(config: ExportConfig) -> type[GraphWriter]:
    writer = REGISTRY.get(type(config))
    if writer is None:
        raise BfexportError(f"unknown export config {type(config).__name__}")
    return writer
