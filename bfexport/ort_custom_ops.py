"""ONNX Runtime stand-in for the TensorRT plugin: the BudgetedAttention node as a Python op.

The trt-plugin flavor's attention nodes (converters/onnx/trt_plugin.py) carry op_type
"BudgetedAttention" in domain "ai.onnx.contrib", which is where onnxruntime-extensions runs
Python custom ops. `register()` defines the op (numpy, the same math as
BudgetedAttention.forward_selected) and `session(...)` opens an ONNX Runtime session with
the extensions library, so a trt-plugin file can be checked for parity on any CPU.

Limits: a Python op has one fixed signature per op_type (float32 here), so an fp16 graph runs
with its nodes' float inputs cast to float32 (`for_onnx_runtime`: exact, and the op computes in
float64 anyway); the extensions library returns outputs through Python lists, so it is a
checker, not a runtime. Needs `pip install onnxruntime-extensions`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS
from bfexport.names import PLUGIN_NAME

_REGISTERED = False


def budgeted_attention_numpy(x: np.ndarray, mask: np.ndarray, heads: np.ndarray, qkv_weight: np.ndarray,
                             qkv_bias: np.ndarray, out_weight: np.ndarray, out_bias: np.ndarray) -> np.ndarray:
    """(B, S, d) float32 from the node's inputs; heads (B, K) with -1 for unused slots.
    Computed in float64: only the selected heads of each sample, one sample at a time."""
    B, S, d = x.shape
    dh = qkv_weight.shape[-1] // 3
    x64, bias = x.astype(np.float64), (1.0 - mask.astype(np.float64)) * MASK_BIAS  # bias (B, S)
    out = np.broadcast_to(out_bias.astype(np.float64), (B, S, d)).copy()
    for b in range(B):
        for h in heads[b]:
            if h < 0:
                continue
            qkv = x64[b] @ qkv_weight[h].astype(np.float64) + qkv_bias[h].astype(np.float64)  # (S, 3dh)
            q, k, v = qkv[:, :dh], qkv[:, dh:2 * dh], qkv[:, 2 * dh:]
            scores = q @ k.T / math.sqrt(dh) + bias[b][None, :]  # (S, S)
            scores -= scores.max(-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(-1, keepdims=True)
            out[b] += (p @ v) @ out_weight[h].astype(np.float64)  # (S, d)
    return out.astype(np.float32)


def register() -> None:
    """Define the BudgetedAttention Python op in onnxruntime-extensions (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError:
        raise BfexportError("onnxruntime-extensions is not installed: pip install onnxruntime-extensions "
                            "(needed to run trt-plugin files with ONNX Runtime)") from None
    f32, i32 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32
    i64, text = PyCustomOpDef.dt_int64, PyCustomOpDef.dt_string

    @onnx_op(  # type: ignore[untyped-decorator]  # onnxruntime_extensions ships no type information
        op_type=PLUGIN_NAME, inputs=[f32, f32, i32, f32, f32, f32, f32], outputs=[f32],
        attrs={"plugin_namespace": text, "plugin_version": text, "aot": i64, "num_heads": i64, "head_dim": i64})
    def _budgeted_attention(x: np.ndarray, mask: np.ndarray, heads: np.ndarray, qkv_weight: np.ndarray,
                            qkv_bias: np.ndarray, out_weight: np.ndarray, out_bias: np.ndarray,
                            **attrs: Any) -> np.ndarray:
        return budgeted_attention_numpy(x, mask, heads, qkv_weight, qkv_bias, out_weight, out_bias)

    _REGISTERED = True


def session_options(options: ort.SessionOptions | None = None) -> ort.SessionOptions:
    """`options` (or new ones) with the extensions library, after register()."""
    register()
    from onnxruntime_extensions import get_library_path

    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # quiet, as bfexport.runtime.session_options
    options.register_custom_ops_library(get_library_path())
    return options


def for_onnx_runtime(proto: onnx.ModelProto) -> onnx.ModelProto:
    """`proto`, or for an fp16 graph a copy whose BudgetedAttention nodes take their float inputs
    through Casts to float32, the one signature the Python op has (the node's output is float32
    in every graph, and the fp16 graph already casts it back)."""
    if not any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    nodes = []
    for node in out.graph.node:
        if node.op_type == PLUGIN_NAME:
            for i, name in enumerate(node.input):
                if i != 2:  # heads is int32 already
                    cast = f"{node.name}/{i}/float32"
                    nodes.append(onnx.helper.make_node("Cast", [name], [cast], name=cast, to=onnx.TensorProto.FLOAT))
                    node.input[i] = cast
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def session(model: str | Path | onnx.ModelProto, options: ort.SessionOptions | None = None,
            **kwargs: Any) -> ort.InferenceSession:
    """An ONNX Runtime CPU session that can run BudgetedAttention nodes (fp32 or fp16 graphs)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return ort.InferenceSession(for_onnx_runtime(proto).SerializeToString(), session_options(options),
                                providers=["CPUExecutionProvider"], **kwargs)
