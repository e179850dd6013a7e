"""BudgetFormer -> ONNX, one graph per flavor, written op by op.

Every flavor shares the trunk (embeddings, pre-LN blocks, FFN, masked-mean pooling,
classifier); they differ only in the attention block:

  adaptive  router in the graph; per sample k and head ranking; the batch's largest k
            selects how many heads run; each sample's heads' Q/K/V/O weight slices are
            gathered ([H, d, 3dh] laid out per head, Gather on axis 0, one broadcast MatMul)
            and slots past a sample's own k are zeroed in the output projection.
  masked    every head computed, unselected heads zeroed (what a plain export gives).
  dense     ordinary multi-head attention with every head, no router.
  static    ordinary attention over a fixed head set per layer, sliced at export time.
  trt-plugin  the adaptive graph with each attention block as one BudgetedAttention custom
            node (TensorRT plugin; ONNX Runtime runs it via converters/ort_custom_ops.py).

Inputs: input_ids, attention_mask (int64 [batch, seq]); budget_thresholds (float
[rows, n_layers]) and head_caps (int64 [rows, n_layers]), rows = 1 or batch, both
overridable initializers defaulting to the checkpoint's values. Outputs: logits,
head_counts (int64 [batch, n_layers]) and selected_heads (int64 [batch, n_layers, n_heads]:
the heads each sample ran, by rank, -1 past its k).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto

from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS, BudgetFormerConfig, BudgetFormerForSequenceClassification
from converters.graph import INT64, GraphBuilder
from converters.onnx_io import KEY_CONFIG, KEY_FLAVOR, KEY_HEADS, KEY_TOKENIZER, set_metadata

MIN_OPSET, MAX_OPSET = 17, 23


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    fp16: bool = False


@dataclass(frozen=True)
class AdaptiveExport(ExportConfig):
    pass


@dataclass(frozen=True)
class MaskedExport(ExportConfig):
    pass


@dataclass(frozen=True)
class DenseExport(ExportConfig):
    pass


@dataclass(frozen=True)
class StaticExport(ExportConfig):
    heads: list[list[int]] = field(default_factory=list)  # per layer, the heads kept


@dataclass(frozen=True)
class TrtPluginExport(ExportConfig):
    """Attention blocks as BudgetedAttention custom nodes for TensorRT (converters/trt_plugin.py)."""


FLAVORS: dict[str, type[ExportConfig]] = {
    "adaptive": AdaptiveExport, "masked": MaskedExport, "dense": DenseExport, "static": StaticExport,
    "trt-plugin": TrtPluginExport,
}


def flavor_name(config: ExportConfig) -> str:
    return next(name for name, cls in FLAVORS.items() if type(config) is cls)


class _Exporter:
    """Holds the builder and the model's weights while one graph is written."""

    def __init__(self, model: BudgetFormerForSequenceClassification, config: ExportConfig) -> None:
        self.cfg: BudgetFormerConfig = model.config
        self.export = config
        self.g = GraphBuilder(config.opset, TensorProto.FLOAT16 if config.fp16 else TensorProto.FLOAT)
        self.w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
        self._full_bias: str | None = None

    # ---- shared pieces -------------------------------------------------------------
    def build(self) -> onnx.ModelProto:
        g, cfg = self.g, self.cfg
        L, H = cfg.n_layers, cfg.n_heads
        ids = g.input("input_ids", INT64, ["batch", "seq"])
        mask = g.input("attention_mask", INT64, ["batch", "seq"])
        adaptive = isinstance(self.export, (AdaptiveExport, MaskedExport))
        if adaptive:
            tau = g.input("budget_thresholds", TensorProto.FLOAT, ["threshold_rows", L],
                          np.asarray([cfg.budget_thresholds], dtype=np.float32))
            if self.export.fp16:
                tau = g.op("Cast", tau, to=g.float_type, name="budget_thresholds_fp16")
            levels = g.op("Sub", g.const(1.0), tau, name="tail_levels")  # (rows, L): 1 - tau, once for all layers
            caps = g.input("head_caps", INT64, ["cap_rows", L], np.asarray([cfg.head_caps], dtype=np.int64))

        maskf = g.op("Cast", mask, to=g.float_type, name="mask_float")  # (B, S)
        length = g.op("Max", g.reduce("ReduceSum", maskf, [1], True), g.const(1.0), name="length")  # (B, 1)
        pool = g.op("Unsqueeze", g.op("Div", maskf, length), g.const([1]), name="pool_weights")  # (B, 1, S)
        key_bias = g.op("Unsqueeze", g.op("Mul", g.op("Sub", g.const(1.0), maskf), g.const(MASK_BIAS)),
                        g.const([1, 2]), name="key_bias")  # (B, 1, 1, S)

        seq_len = g.op("Slice", g.op("Shape", ids), g.const([1]), g.const([2]), name="seq_len")
        positions = g.op("Slice", g.weight("pos_emb.weight", self.w["pos_emb.weight"]), g.const([0]), seq_len,
                         g.const([0]), name="positions")  # (S, d)
        tokens = g.op("Gather", g.weight("tok_emb.weight", self.w["tok_emb.weight"]), ids, name="tokens")
        x = g.op("Add", tokens, positions, name="embeddings")  # (B, S, d)

        counts, selected = [], []
        for l in range(L):
            p = f"blocks.{l}"
            h = self.layer_norm(x, f"{p}.ln_attn")
            if adaptive:
                sel = self.route(l, h, pool, levels, caps)
                attn = (self.adaptive_attention if isinstance(self.export, AdaptiveExport)
                        else self.masked_attention)(l, h, key_bias, sel)
                counts.append(sel["k_col"])
                selected.append(sel["selected"])
            else:
                heads = self.export.heads[l] if isinstance(self.export, StaticExport) else list(range(H))
                attn = self.fixed_attention(l, h, key_bias, heads)
                counts.append(g.op("Expand", g.const([[len(heads)]]), g.op("Shape", length), name=f"{p}.k"))
                fixed = np.full((1, 1, H), -1, dtype=np.int64)
                fixed[0, 0, :len(heads)] = heads
                selected.append(g.op("Expand", g.const(fixed), g.op("Concat", g.op("Shape", length),
                                     g.const([H]), axis=0), name=f"{p}.selected"))
            x = g.op("Add", attn, x, name=f"{p}.residual_attn")
            x = g.op("Add", self.feed_forward(self.layer_norm(x, f"{p}.ln_ffn"), f"{p}.ffn"), x,
                     name=f"{p}.residual_ffn")

        pooled = g.op("MatMul", pool, self.layer_norm(x, "ln_final"), name="pooled")  # (B, 1, d)
        pooled = g.op("Reshape", pooled, g.const([0, cfg.d_model]), name="pooled_flat")
        logits = g.linear(pooled, self.w["classifier.weight"], self.w["classifier.bias"], "classifier")
        if self.export.fp16:
            logits = g.op("Cast", logits, to=TensorProto.FLOAT)
        g.op("Identity", logits, name="logits")
        g.op("Concat", *counts, axis=1, name="head_counts")
        g.op("Concat", *selected, axis=1, name="selected_heads")
        g.output("logits", TensorProto.FLOAT, ["batch", cfg.n_labels])
        g.output("head_counts", INT64, ["batch", L])
        g.output("selected_heads", INT64, ["batch", L, H])
        return g.model(f"budgetformer_{flavor_name(self.export)}",
                       doc=f"BudgetFormer exported by bfexport, flavor {flavor_name(self.export)}")

    def layer_norm(self, x: str, name: str) -> str:
        return self.g.op("LayerNormalization", x, self.g.weight(f"{name}.weight", self.w[f"{name}.weight"]),
                         self.g.weight(f"{name}.bias", self.w[f"{name}.bias"]), axis=-1, epsilon=1e-5, name=name)

    def feed_forward(self, x: str, name: str) -> str:
        g = self.g
        up = g.linear(x, self.w[f"{name}.up.weight"], self.w[f"{name}.up.bias"], f"{name}.up")
        erf = g.op("Erf", g.op("Div", up, g.const(math.sqrt(2.0))))  # exact GELU, as F.gelu
        gelu = g.op("Mul", g.op("Mul", up, g.op("Add", erf, g.const(1.0))), g.const(0.5), name=f"{name}.gelu")
        return g.linear(gelu, self.w[f"{name}.down.weight"], self.w[f"{name}.down.bias"], f"{name}.down")

    def route(self, l: int, h: str, pool: str, levels: str, caps: str) -> dict[str, str]:
        """The router: k per sample and the heads ranked by relevance (Router.select)."""
        g, H, p = self.g, self.cfg.n_heads, f"blocks.{l}.attn.router"
        summary = g.op("MatMul", pool, h, name=f"{p}.summary")  # (B, 1, d)
        logits = g.linear(g.op("Reshape", summary, g.const([0, self.cfg.d_model])),
                          self.w[f"{p}.proj.weight"], self.w[f"{p}.proj.bias"], f"{p}.proj")  # (B, 2H)
        budget = g.op("Slice", logits, g.const([0]), g.const([H]), g.const([1]), name=f"{p}.budget_logits")
        relevance = g.op("Slice", logits, g.const([H]), g.const([2 * H]), g.const([1]), name=f"{p}.relevance")
        # P(K > k) for k = 1..H-1 (Router.budget): reverse cumulative sum, first entry dropped
        tail = g.op("CumSum", g.op("Softmax", budget, axis=-1), g.const(1), reverse=1, name=f"{p}.tail")  # (B, H)
        tail = g.op("Slice", tail, g.const([1]), g.const([H]), g.const([1]))  # (B, H-1)
        level = g.op("Gather", levels, g.const([l]), axis=1, name=f"{p}.level")  # (rows, 1): 1 - tau_l
        above = g.op("Cast", g.op("Greater", tail, level), to=INT64)
        k = g.op("Add", g.reduce("ReduceSum", above, [1], True), g.const([[1]]))  # (B, 1)
        cap_l = g.op("Gather", caps, g.const([l]), axis=1, name=f"{p}.cap")  # (rows, 1)
        k = g.op("Min", k, cap_l, name=f"blocks.{l}.k")  # (B, 1)
        _, ranking = g.op("TopK", relevance, g.const([H]), axis=-1, largest=1, sorted=1, outputs=2,
                          name=f"{p}.ranking")  # (B, H) ties to the lower index
        active = g.op("Less", g.const(np.arange(H)[None, :]), k, name=f"{p}.active")  # (B, H) slot r < k
        selected = g.op("Where", active, ranking, g.const([[-1]]), name=f"blocks.{l}.selected")
        selected = g.op("Unsqueeze", selected, g.const([1]))  # (B, 1, H)
        return {"k_col": k, "ranking": ranking, "active": active, "selected": selected}

    # ---- attention variants --------------------------------------------------------
    def attend(self, q: str, k: str, v: str, key_bias: str, name: str) -> str:
        """softmax(q k^T / sqrt(dh) + bias) v, as BudgetedAttention.attend.

        From opset 23 this is one `Attention` node on (B, h, S, dh), whatever h is at run time:
        ONNX Runtime's kernel for it measured faster than MatMul/Softmax on our CPUs.
        """
        g = self.g
        if g.opset >= 23:
            if self._full_bias is None:  # the kernel wants the mask's query axis spelled out: (B, 1, S, S)
                shape = g.op("Shape", key_bias)  # (B, 1, 1, S)
                seq = g.op("Slice", shape, g.const([3]), g.const([4]))
                full = g.op("Concat", g.op("Slice", shape, g.const([0]), g.const([2])), seq, seq, axis=0)
                self._full_bias = g.op("Expand", key_bias, full, name="key_bias_full")
            return g.op("Attention", q, k, v, self._full_bias, name=f"{name}.attention")  # (B, h, S, dh)
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]), name=f"{name}.scores")
        scores = g.op("Add", g.op("Div", scores, g.const(math.sqrt(self.cfg.d_head))), key_bias)
        return g.op("MatMul", g.op("Softmax", scores, axis=-1), v, name=f"{name}.context")

    def per_head_qkv(self, x: str, weight: str, bias: str, name: str) -> tuple[str, str, str]:
        """x (B, 1, S, d) @ weight (.., h, d, 3dh) + bias (.., h, 1, 3dh) -> q, k, v (B, h, S, dh)."""
        g, dh = self.g, self.cfg.d_head
        qkv = g.op("Add", g.op("MatMul", x, weight), bias, name=f"{name}.qkv")
        q, k, v = g.op("Split", qkv, g.const([dh, dh, dh]), axis=-1, outputs=3, name=f"{name}.split")
        return q, k, v

    def adaptive_attention(self, l: int, h: str, key_bias: str, sel: dict[str, str]) -> str:
        g, p, d = self.g, f"blocks.{l}.attn", self.cfg.d_model
        kmax = g.reduce("ReduceMax", sel["k_col"], [0], False)  # (1,)
        heads = g.op("Slice", sel["ranking"], g.const([0]), kmax, g.const([1]), name=f"{p}.heads")  # (B, kmax)
        live = g.op("Slice", g.op("Cast", sel["active"], to=g.float_type), g.const([0]), kmax, g.const([1]))
        w_qkv = g.op("Gather", g.weight(f"{p}.qkv_weight", self.w[f"{p}.qkv_weight"]), heads, axis=0)
        b_qkv = g.op("Gather", g.weight(f"{p}.qkv_bias", self.w[f"{p}.qkv_bias"][:, None, :]), heads, axis=0)
        hx = g.op("Unsqueeze", h, g.const([1]))  # (B, 1, S, d)
        q, k, v = self.per_head_qkv(hx, w_qkv, b_qkv, p)  # (B, kmax, S, dh)
        ctx = self.attend(q, k, v, key_bias, p)
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, -1]))  # (B, S, kmax*dh)
        w_out = g.op("Gather", g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"]), heads, axis=0)
        w_out = g.op("Mul", w_out, g.op("Unsqueeze", live, g.const([2, 3])), name=f"{p}.out_live")
        w_out = g.op("Reshape", w_out, g.const([0, -1, d]))  # (B, kmax*dh, d)
        out = g.op("MatMul", ctx, w_out, name=f"{p}.out")
        return g.op("Add", out, g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]), name=f"{p}.out_bias")

    def masked_attention(self, l: int, h: str, key_bias: str, sel: dict[str, str]) -> str:
        g, p, H, dh = self.g, f"blocks.{l}.attn", self.cfg.n_heads, self.cfg.d_head
        hx = g.op("Unsqueeze", h, g.const([1]))
        q, k, v = self.per_head_qkv(hx, g.weight(f"{p}.qkv_weight", self.w[f"{p}.qkv_weight"]),
                                    g.weight(f"{p}.qkv_bias", self.w[f"{p}.qkv_bias"][:, None, :]), p)
        ctx = self.attend(q, k, v, key_bias, p)  # (B, H, S, dh), every head
        zeros = g.op("Mul", g.op("Cast", sel["ranking"], to=g.float_type), g.const(0.0))
        head_mask = g.op("ScatterElements", zeros, sel["ranking"], g.op("Cast", sel["active"], to=g.float_type),
                         axis=1, name=f"{p}.head_mask")  # (B, H) 1 for selected heads
        ctx = g.op("Mul", ctx, g.op("Unsqueeze", head_mask, g.const([2, 3])))
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, H * dh]))
        w_out = g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"].reshape(H * dh, -1))
        return g.op("Add", g.op("MatMul", ctx, w_out), g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]),
                    name=f"{p}.out")

    def fixed_attention(self, l: int, h: str, key_bias: str, heads: list[int]) -> str:
        """Ordinary multi-head attention over `heads` in the standard [d, 3*n*dh] layout."""
        g, p, dh, n = self.g, f"blocks.{l}.attn", self.cfg.d_head, len(heads)
        qkv_w = self.w[f"{p}.qkv_weight"][heads]  # (n, d, 3dh)
        qkv_b = self.w[f"{p}.qkv_bias"][heads]  # (n, 3dh)
        # (d, 3, n, dh): all heads' Q columns, then K, then V
        w = qkv_w.reshape(n, -1, 3, dh).transpose(1, 2, 0, 3).reshape(qkv_w.shape[1], 3 * n * dh)
        b = qkv_b.reshape(n, 3, dh).transpose(1, 0, 2).reshape(3 * n * dh)
        qkv = g.op("Add", g.op("MatMul", h, g.weight(f"{p}.qkv_weight", w)), g.weight(f"{p}.qkv_bias", b),
                   name=f"{p}.qkv")  # (B, S, 3*n*dh)
        parts = g.op("Split", qkv, g.const([n * dh] * 3), axis=-1, outputs=3, name=f"{p}.split")
        q, k, v = (g.op("Transpose", g.op("Reshape", t, g.const([0, 0, n, dh])), perm=[0, 2, 1, 3])
                   for t in parts)  # (B, n, S, dh)
        ctx = self.attend(q, k, v, key_bias, p)
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, n * dh]))
        w_out = g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"][heads].reshape(n * dh, -1))
        return g.op("Add", g.op("MatMul", ctx, w_out), g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]),
                    name=f"{p}.out")


def export(model: BudgetFormerForSequenceClassification, config: ExportConfig) -> onnx.ModelProto:
    """Export `model` as the flavor `config` names (AdaptiveExport(), DenseExport(), ...)."""
    cfg = model.config
    if not MIN_OPSET <= config.opset <= MAX_OPSET:
        raise BfexportError(f"opset {config.opset} is not supported (use {MIN_OPSET}..{MAX_OPSET})")
    if type(config) not in FLAVORS.values():
        raise BfexportError(f"unknown export config {type(config).__name__}")
    if isinstance(config, (AdaptiveExport, MaskedExport, TrtPluginExport)) and not cfg.adaptive:
        raise BfexportError("this checkpoint was trained dense (every head always on): export it with --flavor dense")
    if isinstance(config, StaticExport):
        if len(config.heads) != cfg.n_layers:
            raise BfexportError(f"static export needs a head set for each of the {cfg.n_layers} layers")
        for heads in config.heads:
            if not heads or len(set(heads)) != len(heads) or not all(0 <= h < cfg.n_heads for h in heads):
                raise BfexportError(f"static head set {heads} must be distinct heads in [0, {cfg.n_heads})")
    if isinstance(config, TrtPluginExport):
        from converters.trt_plugin import TrtPluginExporter  # it imports this module: keep the import lazy
        proto = TrtPluginExporter(model, config).build()
    else:
        proto = _Exporter(model, config).build()
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_with_metadata(model: BudgetFormerForSequenceClassification, config: ExportConfig,
                         tokenizer_json: str | None = None) -> onnx.ModelProto:
    """export() plus the metadata that lets the file stand alone (config, flavor, tokenizer)."""
    proto = export(model, config)
    values = {KEY_CONFIG: model.config.to_json(), KEY_FLAVOR: flavor_name(config)}
    if isinstance(config, StaticExport):
        values[KEY_HEADS] = json.dumps(config.heads)
    if tokenizer_json is not None:
        values[KEY_TOKENIZER] = tokenizer_json
    set_metadata(proto, values)
    return proto
