"""The trunk every flavor shares, written op by op: embeddings, pre-LN or post-LN blocks, FFN,
pooling, pooler, classifier and the graph's inputs and outputs, for every architecture option
of BudgetFormerConfig (a default option writes exactly the ops it always did).

`GraphWriter` is the public base of the flavor writers: a flavor declares its extra inputs
(`budget_inputs`) and writes each block's attention (`block`); everything else is here, so
the flavors differ only in the attention block.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from bfexport.flavors import ExportConfig
from bfexport.model import MASK_BIAS, BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.names import ATTENTION_MASK, HEAD_COUNTS, INPUT_IDS, LOGITS, SELECTED_HEADS
from converters.onnx.graph import INT64, GraphBuilder


class GraphWriter:
    """Holds the builder and the model's weights while one graph is written."""

    def __init__(self, model: BudgetFormerForSequenceClassification, config: ExportConfig) -> None:
        self.cfg: BudgetFormerConfig = model.config
        self.config = config
        self.g = GraphBuilder(config.opset, TensorProto.FLOAT16 if config.fp16 else TensorProto.FLOAT)
        self.w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
        self._full_bias: str | None = None

    # ---- what a flavor supplies ---------------------------------------------------------
    def budget_inputs(self) -> None:
        """Declare inputs beyond input_ids and attention_mask (none by default)."""

    def block(self, layer: int, h: str, key_bias: str, pool: str, length: str) -> tuple[str, str, str]:
        """Layer `layer`'s attention on the hidden state h (B, S, d) it reads: returns its output
        (B, S, d), the heads each sample ran (B, 1) and which, for selected_heads() (here: by rank,
        (B, 1, H), -1 past k)."""
        raise NotImplementedError

    def selected_heads(self, counts: str, per_layer: list[str]) -> None:
        """The selected_heads output (B, L, H) from head_counts (B, L) and each block's third result."""
        self.g.op("Concat", *per_layer, axis=1, name=SELECTED_HEADS)

    def doc(self) -> str:
        return f"BudgetFormer exported by bfexport, flavor {self.config.flavor}"

    # ---- the trunk -------------------------------------------------------------------
    def build(self) -> onnx.ModelProto:
        g, cfg = self.g, self.cfg
        L, H = cfg.n_layers, cfg.n_heads
        ids = g.input(INPUT_IDS, INT64, ["batch", "seq"])
        mask = g.input(ATTENTION_MASK, INT64, ["batch", "seq"])
        self.budget_inputs()

        maskf = g.op("Cast", mask, to=g.float_type, name="mask_float")  # (B, S)
        length = g.op("Max", g.reduce("ReduceSum", maskf, [1], True), g.const(1.0), name="length")  # (B, 1)
        pool = g.op("Unsqueeze", g.op("Div", maskf, length), g.const([1]), name="pool_weights")  # (B, 1, S)
        key_bias = g.op("Unsqueeze", g.op("Mul", g.op("Sub", g.const(1.0), maskf), g.const(MASK_BIAS)),
                        g.const([1, 2]), name="key_bias")  # (B, 1, 1, S)

        x = self.embeddings(ids)  # (B, S, d)
        counts, selected = [], []
        for layer in range(L):
            x, k, sel = self.encoder_layer(layer, x, key_bias, pool, length)
            counts.append(k)
            selected.append(sel)

        if cfg.norm == "pre":
            x = self.layer_norm(x, "ln_final")
        if cfg.pooling == "mean":
            pooled = g.op("MatMul", pool, x, name="pooled")  # (B, 1, d)
            pooled = g.op("Reshape", pooled, g.const([0, cfg.d_model]), name="pooled_flat")
        else:
            pooled = g.op("Gather", x, g.const(0), axis=1, name="pooled_first")  # (B, d): [CLS] / <s>
        if cfg.pooler != "none":
            pooled = self.activation(g.linear(pooled, self.w["pooler.weight"], self.w["pooler.bias"], "pooler"),
                                     cfg.pooler, "pooler")
        logits = g.linear(pooled, self.w["classifier.weight"], self.w["classifier.bias"], "classifier")
        if self.config.fp16:
            logits = g.op("Cast", logits, to=TensorProto.FLOAT)
        g.op("Identity", logits, name=LOGITS)
        self.selected_heads(g.op("Concat", *counts, axis=1, name=HEAD_COUNTS), selected)
        g.output(LOGITS, TensorProto.FLOAT, ["batch", cfg.n_labels])
        g.output(HEAD_COUNTS, INT64, ["batch", L])
        g.output(SELECTED_HEADS, INT64, ["batch", L, H])
        return g.model(f"budgetformer_{self.config.flavor}", doc=self.doc())

    def embeddings(self, ids: str) -> str:
        """Token (+ token-type row 0) + position embeddings, positions from position_offset; post-LN
        models normalise them (as the model's forward)."""
        g, offset = self.g, self.cfg.position_offset
        seq_len = g.op("Slice", g.op("Shape", ids), g.const([1]), g.const([2]), name="seq_len")
        table = g.weight("pos_emb.weight", self.w["pos_emb.weight"])  # (max_length + offset, d)
        start, end = g.const([0]), seq_len
        if offset:
            start, end = g.const([offset]), g.op("Add", seq_len, g.const([offset]), name="positions_end")
        positions = g.op("Slice", table, start, end, g.const([0]), name="positions")  # (S, d): rows offset..offset+S
        tokens = g.op("Gather", g.weight("tok_emb.weight", self.w["tok_emb.weight"]), ids, name="tokens")
        if "type_emb.weight" in self.w:
            segment = g.op("Gather", g.weight("type_emb.weight", self.w["type_emb.weight"]), g.const(0), axis=0,
                           name="token_type")  # (d,): one segment, type id 0
            tokens = g.op("Add", tokens, segment, name="tokens_typed")
        x = g.op("Add", tokens, positions, name="embeddings")  # (B, S, d)
        return x if self.cfg.norm == "pre" else self.layer_norm(x, "ln_emb")

    def encoder_layer(self, layer: int, x: str, key_bias: str, pool: str, length: str) -> tuple[str, str, str]:
        """One Block: attention and FFN with their residuals, in the config's LayerNorm order (Block.forward)."""
        g, p = self.g, f"blocks.{layer}"
        if self.cfg.norm == "pre":
            attn, k, sel = self.block(layer, self.layer_norm(x, f"{p}.ln_attn"), key_bias, pool, length)
            x = g.op("Add", attn, x, name=f"{p}.residual_attn")
            x = g.op("Add", self.feed_forward(self.layer_norm(x, f"{p}.ln_ffn"), f"{p}.ffn"), x,
                     name=f"{p}.residual_ffn")
        else:
            attn, k, sel = self.block(layer, x, key_bias, pool, length)
            x = self.layer_norm(g.op("Add", attn, x, name=f"{p}.residual_attn"), f"{p}.ln_attn")
            x = self.layer_norm(g.op("Add", self.feed_forward(x, f"{p}.ffn"), x, name=f"{p}.residual_ffn"),
                                f"{p}.ln_ffn")
        return x, k, sel

    def layer_norm(self, x: str, name: str) -> str:
        return self.g.op("LayerNormalization", x, self.g.weight(f"{name}.weight", self.w[f"{name}.weight"]),
                         self.g.weight(f"{name}.bias", self.w[f"{name}.bias"]), axis=-1,
                         epsilon=self.cfg.layer_norm_eps, name=name)

    def feed_forward(self, x: str, name: str) -> str:
        g = self.g
        up = g.linear(x, self.w[f"{name}.up.weight"], self.w[f"{name}.up.bias"], f"{name}.up")
        act = self.activation(up, self.cfg.activation, name)
        return g.linear(act, self.w[f"{name}.down.weight"], self.w[f"{name}.down.bias"], f"{name}.down")

    def activation(self, x: str, kind: str, name: str) -> str:
        """The model's ACTIVATIONS[kind] on x, as node f"{name}.{kind}"."""
        g, out = self.g, f"{name}.{kind}"
        if kind == "gelu":  # exact GELU, as F.gelu
            erf = g.op("Erf", g.op("Div", x, g.const(math.sqrt(2.0))))
            return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.const(1.0))), g.const(0.5), name=out)
        if kind == "gelu_tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as F.gelu(approximate="tanh")
            cube = g.op("Mul", g.op("Mul", x, x), x)
            inner = g.op("Mul", g.op("Add", x, g.op("Mul", cube, g.const(0.044715))), g.const(math.sqrt(2 / math.pi)))
            return g.op("Mul", g.op("Mul", x, g.op("Add", g.op("Tanh", inner), g.const(1.0))), g.const(0.5), name=out)
        return g.op({"relu": "Relu", "tanh": "Tanh"}[kind], x, name=out)

    # ---- attention pieces the flavors share ----------------------------------------------
    def attend(self, q: str, k: str, v: str, key_bias: str, name: str) -> str:
        """softmax(q k^T / sqrt(dh) + bias) v, as BudgetedAttention.attend.

        From opset 23 this is one `Attention` node on (B, h, S, dh), whatever h is at run time:
        ONNX Runtime's kernel for it measured faster than MatMul/Softmax on our CPUs.
        """
        g = self.g
        if g.opset >= 23:
            return g.op("Attention", q, k, v, self.full_bias(key_bias), name=f"{name}.attention")  # (B, h, S, dh)
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]), name=f"{name}.scores")
        scores = g.op("Add", g.op("Div", scores, g.const(math.sqrt(self.cfg.d_head))), key_bias)
        return g.op("MatMul", g.op("Softmax", scores, axis=-1), v, name=f"{name}.context")

    def full_bias(self, key_bias: str) -> str:
        """key_bias (B, 1, 1, S) expanded to (B, 1, S, S), once per graph: the opset-23 Attention
        kernel wants the mask's query axis spelled out."""
        if self._full_bias is None:
            g = self.g
            shape = g.op("Shape", key_bias)  # (B, 1, 1, S)
            seq = g.op("Slice", shape, g.const([3]), g.const([4]))
            full = g.op("Concat", g.op("Slice", shape, g.const([0]), g.const([2])), seq, seq, axis=0)
            self._full_bias = g.op("Expand", key_bias, full, name="key_bias_full")
        return self._full_bias

    def per_head_qkv(self, x: str, weight: str, bias: str, name: str) -> tuple[str, str, str]:
        """x (B, 1, S, d) @ weight (.., h, d, 3dh) + bias (.., h, 1, 3dh) -> q, k, v (B, h, S, dh)."""
        g, dh = self.g, self.cfg.d_head
        qkv = g.op("Add", g.op("MatMul", x, weight), bias, name=f"{name}.qkv")
        q, k, v = g.op("Split", qkv, g.const([dh, dh, dh]), axis=-1, outputs=3, name=f"{name}.split")
        return q, k, v
