"""Benchmark-only dense baselines: the plain dense export rewritten with fused attention nodes,
and ONNX Runtime's transformers optimizer. Not flavors: nothing outside the benchmark exports them.

Both rewrites start from `converters.export(model, DenseExport(...))` and replace each layer's
attention core (everything between the input projection's input and the output projection)
by one node, found through the layer's weight names, so weights and everything else stay the
plain dense export's and the logits agree with it (the sweep checks that before timing):

  mha     ``com.microsoft.Attention`` (input, packed QKV weight, bias, 2-D mask): what the
          transformers optimizer produces when its patterns match.
  attn23  ONNX opset-23 ``Attention`` on the packed projection's Q, K, V (B, S, d), without the
          per-head reshapes of the plain export.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

import onnx
from onnx import helper

from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS, BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.names import ATTENTION_MASK
from converters import DenseExport, export

ATTENTION_MODES = ("mha", "attn23")


def attention_op_export(model: BudgetFormerForSequenceClassification, mode: str) -> onnx.ModelProto:
    """Dense graph with fused attention nodes: mode "mha" (com.microsoft) or "attn23" (opset 23)."""
    if mode not in ATTENTION_MODES:
        raise BfexportError(f"attention op mode must be 'mha' or 'attn23', got {mode!r}")
    proto = export(model, DenseExport(opset=23 if mode == "attn23" else 17))
    cfg = model.config
    nodes = list(proto.graph.node)
    mask_int32 = helper.make_node("Cast", [ATTENTION_MASK], ["mask_int32"], name="mask_int32",
                                  to=onnx.TensorProto.INT32)
    for layer in range(cfg.n_layers):
        nodes = _fuse_layer(nodes, f"blocks.{layer}.attn", cfg, mode, mask_int32.output[0])
    if mode == "mha":
        nodes.insert(0, mask_int32)
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    _prune(proto)
    return proto


def _fuse_layer(nodes: list[onnx.NodeProto], p: str, cfg: BudgetFormerConfig, mode: str,
                mask: str) -> list[onnx.NodeProto]:
    """nodes with layer p's attention core as one node, placed where the core's result was made."""
    qkv_matmul = _consumer(nodes, f"{p}.qkv_weight")
    out_matmul = _consumer(nodes, f"{p}.out_weight")
    h, ctx = qkv_matmul.input[0], out_matmul.input[0]  # (B, S, d) in, (B, S, d) context out
    if mode == "mha":
        fused = helper.make_node("Attention", [h, f"{p}.qkv_weight", f"{p}.qkv_bias", mask], [ctx], name=f"{p}.mha",
                                 domain="com.microsoft", num_heads=cfg.n_heads, mask_filter_value=MASK_BIAS)
    else:
        split = _consumer(nodes, _consumer(nodes, qkv_matmul.output[0]).output[0])  # MatMul -> Add (bias) -> Split
        core = _producer(nodes, _producer(nodes, _producer(nodes, ctx).input[0]).input[0])  # Reshape <- Transpose <-
        if split.op_type != "Split" or core.op_type != "Attention":
            raise BfexportError(f"{p}: the dense export's attention is not Split ... Attention: cannot fuse it")
        fused = helper.make_node("Attention", [*split.output, core.input[3]], [ctx], name=f"{p}.attention",
                                 q_num_heads=cfg.n_heads, kv_num_heads=cfg.n_heads)
    at = nodes.index(_producer(nodes, ctx))
    return [*nodes[:at], fused, *nodes[at + 1:]]  # the old core is left unused: _prune drops it


def _consumer(nodes: list[onnx.NodeProto], tensor: str) -> onnx.NodeProto:
    users = [n for n in nodes if tensor in n.input]
    if len(users) != 1:
        raise BfexportError(f"the dense export has {len(users)} users of {tensor}, expected one: cannot fuse it")
    return users[0]


def _producer(nodes: list[onnx.NodeProto], tensor: str) -> onnx.NodeProto:
    return next(n for n in nodes if tensor in n.output)


def _prune(proto: onnx.ModelProto) -> None:
    """Drop the nodes no graph output depends on, then the initializers no node reads."""
    graph = proto.graph
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if needed & set(node.output):
            kept.append(node)
            needed |= set(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inputs = {i.name for i in graph.input}
    initializers = [t for t in graph.initializer if t.name in needed or t.name in inputs]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


@contextmanager
def _quiet(captured: io.StringIO) -> Iterator[None]:
    """The optimizer warns through logging (our producer is not "pytorch") and prints shape
    inference failures to stdout, which would corrupt --json output: capture both."""
    logging.disable(logging.WARNING)
    try:
        with redirect_stdout(captured):
            yield
    finally:
        logging.disable(logging.NOTSET)


def ort_optimize(proto: onnx.ModelProto, config: BudgetFormerConfig) -> tuple[onnx.ModelProto, dict[str, int], str]:
    """Run onnxruntime.transformers' BERT fusions (opt_level 0: fusions only, the session still
    applies its own). Returns the new graph, the ops it added (e.g. {"SkipLayerNormalization": 8})
    and what it printed. Raises whatever the optimizer raises."""
    from onnxruntime.transformers.optimizer import optimize_model

    source = onnx.ModelProto()
    source.CopyFrom(proto)  # the optimizer edits its input in place
    before = Counter(n.op_type for n in proto.graph.node)
    printed = io.StringIO()
    with _quiet(printed):
        optimized = optimize_model(source, model_type="bert", num_heads=config.n_heads,
                                   hidden_size=config.d_model, opt_level=0, use_gpu=False).model
    after = Counter(n.op_type for n in optimized.graph.node)
    added = {op: after[op] - before[op] for op in sorted(after) if after[op] > before[op]}
    return optimized, added, " ".join(printed.getvalue().split())
