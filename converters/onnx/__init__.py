"""BudgetFormer -> ONNX, one graph per flavor, written op by op.

Every flavor shares the trunk; they differ only in the attention block:

  adaptive    router in the graph; only each sample's selected heads are computed.
  masked      every head computed, unselected heads zeroed (what a plain export gives).
  dense       ordinary multi-head attention with every head, no router.
  static      ordinary attention over a fixed head set per layer, sliced at export time.
  trt-plugin  the adaptive graph with each attention block as one BudgetedAttention custom
              node (TensorRT plugin; ONNX Runtime runs it via bfexport/ort_custom_ops.py).

Inputs: input_ids, attention_mask (int64 [batch, seq]); budget_thresholds (float
[rows, n_layers]) and head_caps (int64 [rows, n_layers]), rows = 1 or batch, both
overridable initializers defaulting to the checkpoint's values (routed flavors only).
Outputs: logits, head_counts (int64 [batch, n_layers]) and selected_heads (int64
[batch, n_layers, n_heads]: the heads each sample ran, by rank, -1 past its k). The names
live in bfexport/names.py.

The export configs (one frozen dataclass per flavor, with its facts), the names and the
metadata I/O live on the ground floor (bfexport/flavors.py, names.py, exported.py): the
runtime reads exported files too. Modules here, one job each:
  graph       GraphBuilder: named nodes, deterministic names, opset-aware reductions.
  trunk       GraphWriter, the shared trunk (embeddings, pre/post-LN blocks, FFN, pooling, pooler, outputs).
  router      the router in the graph and its typed Selection, for the routed flavors.
  adaptive, masked, fixed (dense and static), trt_plugin: one writer per flavor.
  registry    config type -> the writer of its graph.
  export      export() and export_with_metadata(), dispatching through the registry.
  rebuild     the PyTorch model an exported file was written from.
"""

from bfexport.exported import ExportedModel, load_exported, save_onnx
from bfexport.flavors import (
    FLAVORS,
    MAX_OPSET,
    MIN_OPSET,
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
)
from converters.onnx.export import export, export_with_metadata
from converters.onnx.registry import REGISTRY
from converters.onnx.trunk import GraphWriter

__all__ = ["FLAVORS", "MAX_OPSET", "MIN_OPSET", "REGISTRY", "AdaptiveExport", "DenseExport", "ExportConfig",
           "ExportedModel", "GraphWriter", "MaskedExport", "StaticExport", "TrtPluginExport", "export",
           "export_with_metadata", "load_exported", "save_onnx"]
