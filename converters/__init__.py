"""PyTorch -> ONNX exporters (one per flavor), parity validation and file I/O."""

from converters.onnx_export import (
    FLAVORS,
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
    export,
    export_with_metadata,
)
from converters.onnx_io import ExportedModel, load_exported, save_onnx

__all__ = ["FLAVORS", "AdaptiveExport", "DenseExport", "ExportConfig", "ExportedModel", "MaskedExport",
           "StaticExport", "TrtPluginExport", "export", "export_with_metadata", "load_exported", "save_onnx"]
