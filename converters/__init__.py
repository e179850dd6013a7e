"""PyTorch -> ONNX exporters (one per flavor), parity validation and file I/O.

  onnx/            the exporter: trunk, one writer per flavor, registry, metadata, rebuild.
  tensorrt/        the BudgetedAttention TensorRT plugin and the engine builder (tensorrt imported lazily).
  kernels/         the budgeted-attention Triton kernels behind the plugin.
  validate         parity of an exported file against the PyTorch model.
  static_heads     choosing a static export's head sets from data.
  hf               an Optimum / transformers-loadable directory beside an export.
  triton/          Triton Inference Server repositories: configs as Triton's ModelConfig, the
                   tokenizer backend, install, offline check (one job per module: see its __init__).
"""

from converters.onnx import (
    FLAVORS,
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    ExportedModel,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
    export,
    export_with_metadata,
    load_exported,
    save_onnx,
)

__all__ = ["FLAVORS", "AdaptiveExport", "DenseExport", "ExportConfig", "ExportedModel", "MaskedExport",
           "StaticExport", "TrtPluginExport", "export", "export_with_metadata", "load_exported", "save_onnx"]
