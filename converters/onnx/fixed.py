"""The dense and static flavors: ordinary multi-head attention over a fixed head set per
layer (every head for dense, the config's heads for static), no router."""

from __future__ import annotations

import numpy as np

from bfexport.errors import BfexportError
from bfexport.flavors import StaticExport
from bfexport.model import BudgetFormerForSequenceClassification
from converters.onnx.trunk import GraphWriter


class DenseWriter(GraphWriter):
    """Every head in every layer; `heads` is what a subclass narrows."""

    def heads(self, layer: int) -> list[int]:
        return list(range(self.cfg.n_heads))

    def block(self, layer: int, h: str, key_bias: str, pool: str, length: str) -> tuple[str, str, str]:
        g, p, H, heads = self.g, f"blocks.{layer}", self.cfg.n_heads, self.heads(layer)
        attn = self.fixed_attention(layer, h, key_bias, heads)
        k = g.op("Expand", g.const([[len(heads)]]), g.op("Shape", length), name=f"{p}.k")
        fixed = np.full((1, 1, H), -1, dtype=np.int64)
        fixed[0, 0, :len(heads)] = heads
        selected = g.op("Expand", g.const(fixed), g.op("Concat", g.op("Shape", length), g.const([H]), axis=0),
                        name=f"{p}.selected")
        return attn, k, selected

    def fixed_attention(self, layer: int, h: str, key_bias: str, heads: list[int]) -> str:
        """Ordinary multi-head attention over `heads` in the standard [d, 3*n*dh] layout."""
        g, p, dh, n = self.g, f"blocks.{layer}.attn", self.cfg.d_head, len(heads)
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


class StaticWriter(DenseWriter):
    """The config's head set in each layer, checked against the model first."""

    def __init__(self, model: BudgetFormerForSequenceClassification, config: StaticExport) -> None:
        cfg = model.config
        if len(config.heads) != cfg.n_layers:
            raise BfexportError(f"static export needs a head set for each of the {cfg.n_layers} layers")
        for heads in config.heads:
            if not heads or len(set(heads)) != len(heads) or not all(0 <= h < cfg.n_heads for h in heads):
                raise BfexportError(f"static head set {heads} must be distinct heads in [0, {cfg.n_heads})")
        super().__init__(model, config)
        self.head_sets = config.heads

    def heads(self, layer: int) -> list[int]:
        return self.head_sets[layer]
