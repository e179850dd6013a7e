"""Names that cross module boundaries: the exported graph's inputs and outputs, the router
tensors calibration reads back, and the metadata keys an exported file carries.

One home, so renaming one is one edit here and a failing test, never two spellings that drift.
It sits on the ground floor because the runtime (`OnnxClassifier`) feeds and reads them too.
"""

from __future__ import annotations

# ---- graph inputs ----------------------------------------------------------------------
INPUT_IDS = "input_ids"  # int64 (batch, seq)
ATTENTION_MASK = "attention_mask"  # int64 (batch, seq), 1 for real tokens
BUDGET_THRESHOLDS = "budget_thresholds"  # float (rows, n_layers), rows = 1 or batch; overridable initializer
HEAD_CAPS = "head_caps"  # int64 (rows, n_layers); overridable initializer
TOKEN_INPUTS = (INPUT_IDS, ATTENTION_MASK)
BUDGET_INPUTS = (BUDGET_THRESHOLDS, HEAD_CAPS)  # present in routed flavors only

# ---- graph outputs ---------------------------------------------------------------------
LOGITS = "logits"  # float32 (batch, n_labels)
HEAD_COUNTS = "head_counts"  # int64 (batch, n_layers): heads each sample ran
SELECTED_HEADS = "selected_heads"  # int64 (batch, n_layers, n_heads): heads by rank, -1 past k
OUTPUTS = (LOGITS, HEAD_COUNTS, SELECTED_HEADS)


# ---- router tensors inside the graph -----------------------------------------------------
def router_tail(layer: int) -> str:
    """Layer `layer`'s reverse cumulative budget distribution (CumSum, (B, H)); calibration adds
    it as an output to price many budgets from one run."""
    return f"blocks.{layer}.attn.router.tail"


# ---- metadata_props keys ----------------------------------------------------------------
KEY_CONFIG = "bfexport.config"  # the checkpoint's BudgetFormerConfig as JSON
KEY_FLAVOR = "bfexport.flavor"  # the flavor's name (bfexport.flavors.FLAVORS)
KEY_HEADS = "bfexport.static_heads"  # static: the head set of each layer, JSON
KEY_TOKENIZER = "bfexport.tokenizer"  # the tokenizer.json text, when embedded
KEY_CALIBRATION = "bfexport.calibration"  # how calibration chose the file's default budgets, JSON

# ---- the budgeted-attention custom node (trt-plugin flavor) ---------------------------------
PLUGIN_NAME = "BudgetedAttention"  # the node's op_type and the TensorRT plugin's name
PLUGIN_NAMESPACE = "bfexport"  # TensorRT's parser takes the namespace from this attribute
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"
PLUGIN_VERSION = "1"
ONNX_DOMAIN = "ai.onnx.contrib"  # ONNX Runtime extensions' domain for Python custom ops
