"""The masked flavor: every head computed, the unselected ones zeroed (what a plain export of
the PyTorch model gives); saves no compute, kept as the reference for the adaptive graph."""

from __future__ import annotations

from converters.onnx.router import RoutedWriter, Selection


class MaskedWriter(RoutedWriter):
    def attention(self, layer: int, h: str, key_bias: str, sel: Selection) -> str:
        g, p, H, dh = self.g, f"blocks.{layer}.attn", self.cfg.n_heads, self.cfg.d_head
        hx = g.op("Unsqueeze", h, g.const([1]))
        q, k, v = self.per_head_qkv(hx, g.weight(f"{p}.qkv_weight", self.w[f"{p}.qkv_weight"]),
                                    g.weight(f"{p}.qkv_bias", self.w[f"{p}.qkv_bias"][:, None, :]), p)
        ctx = self.attend(q, k, v, key_bias, p)  # (B, H, S, dh), every head
        ctx = g.op("Mul", ctx, g.op("Unsqueeze", self.head_mask(sel, p), g.const([2, 3])))
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, H * dh]))
        w_out = g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"].reshape(H * dh, -1))
        return g.op("Add", g.op("MatMul", ctx, w_out), g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]),
                    name=f"{p}.out")
