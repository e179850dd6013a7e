"""The PyTorch model back from an exported file: config from its metadata, weights from its initializers.

Why: `bfexport calibrate` is given only MODEL.onnx, and the PyTorch and TensorRT latency runtimes
need the model itself. Every weight the exporters write is a state_dict tensor under the same name
in a known layout (Linear weights transposed; attention weights per head, or for dense/static
in the standard [d, 3*n*dh] layout), so rebuilding is exact: the weights are the file's, bit for
bit (widened to float32 from an fp16 export). Files whose dropped heads are not in the file
(static exports of a head subset) cannot be rebuilt and are refused.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel
from bfexport.model import BudgetFormerForSequenceClassification

TRANSPOSED = ("router.proj.weight", "ffn.up.weight", "ffn.down.weight", "pooler.weight",
              "classifier.weight")  # written by GraphBuilder.linear


def rebuild_model(exported: ExportedModel) -> BudgetFormerForSequenceClassification:
    """The model `exported` was written from, in eval mode, with the file's default budgets.

    A dense or static file has no router: the rebuilt model runs every head (adaptive=False),
    as the file does, and its router weights are zero.

    Example:
        model = rebuild_model(load_exported("out/model.onnx"))
    """
    cfg, path = exported.config, exported.path
    routed = exported.kind.routed
    fixed = None if routed else _fixed_heads(exported)
    config = replace(cfg, adaptive=routed, budget_thresholds=exported.default_thresholds,
                     head_caps=exported.default_caps)
    model = BudgetFormerForSequenceClassification(config)
    inits = {t.name: t for t in exported.proto.graph.initializer}
    state = {}
    for name, param in model.state_dict().items():
        if fixed is not None and ".router." in name:
            state[name] = torch.zeros_like(param)
            continue
        if name not in inits:
            raise BfexportError(f"{path}: no initializer '{name}', so the model cannot be rebuilt from this file")
        array = numpy_helper.to_array(inits[name]).astype(np.float32)
        if array.size != param.numel():
            raise BfexportError(f"{path}: initializer '{name}' has shape {array.shape}, expected "
                                f"{param.numel()} values (a model of shape {tuple(param.shape)})")
        layer = int(name.split(".")[1]) if name.startswith("blocks.") else 0
        array = _state_layout(name, array, cfg.n_heads, cfg.d_head, None if fixed is None else fixed[layer])
        if array.shape != tuple(param.shape):
            raise BfexportError(f"{path}: initializer '{name}' gives shape {array.shape}, "
                                f"expected {tuple(param.shape)}")
        state[name] = torch.from_numpy(np.ascontiguousarray(array))
    model.load_state_dict(state)
    return model.eval()


def _fixed_heads(exported: ExportedModel) -> list[list[int]]:
    """Per layer, the head order of a dense/static file's [d, 3*H*dh] weights; every head must be there."""
    H, L = exported.config.n_heads, exported.config.n_layers
    heads = exported.fixed_heads
    if not isinstance(heads, list) or len(heads) != L:
        raise BfexportError(f"{exported.path}: static export without a head set per layer in its metadata")
    for layer, kept in enumerate(heads):
        if sorted(kept) != list(range(H)):
            raise BfexportError(f"{exported.path}: static export keeps heads {kept} of {H} in layer {layer}; the "
                                "dropped heads' weights are not in the file, so the model cannot be rebuilt "
                                "(export with --flavor adaptive)")
    return heads


def _state_layout(name: str, array: np.ndarray, H: int, dh: int, heads: list[int] | None) -> np.ndarray:
    """Initializer `name` in the state_dict's layout. heads: the fixed layout's head order, or
    None for the per-head layout (qkv (H, d, 3dh), bias (H[, 1], 3dh), out (H, dh, d) or (H*dh, d))."""
    if name.endswith(TRANSPOSED):
        return array.T
    kind = name.rsplit(".", 1)[-1]
    if kind not in ("qkv_weight", "qkv_bias", "out_weight"):
        return array
    if heads is None:
        return array.reshape({"qkv_weight": (H, -1, 3 * dh), "qkv_bias": (H, 3 * dh), "out_weight": (H, dh, -1)}[kind])
    n = len(heads)  # undo converters.onnx.fixed.DenseWriter.fixed_attention: (d, 3, n, dh) columns, (3, n, dh) bias
    per_head: np.ndarray
    if kind == "qkv_weight":
        per_head = array.reshape(-1, 3, n, dh).transpose(2, 0, 1, 3).reshape(n, -1, 3 * dh)
    elif kind == "qkv_bias":
        per_head = array.reshape(3, n, dh).transpose(1, 0, 2).reshape(n, 3 * dh)
    else:
        per_head = array.reshape(n, dh, -1)
    out = np.empty_like(per_head)
    out[heads] = per_head
    return out


def float_type(exported: ExportedModel) -> int:
    """The graph's float type (onnx.TensorProto.FLOAT or FLOAT16), read from the token embedding."""
    emb = next((t for t in exported.proto.graph.initializer if t.name == "tok_emb.weight"), None)
    return emb.data_type if emb is not None else onnx.TensorProto.FLOAT
