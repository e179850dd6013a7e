"""The adaptive flavor: per sample k and head ranking from the router; the batch's largest k
selects how many heads run; each sample's heads' Q/K/V/O weight slices are gathered
([H, d, 3dh] laid out per head, Gather on axis 0, one broadcast MatMul) and slots past a
sample's own k are zeroed in the output projection."""

from __future__ import annotations

from converters.onnx.router import RoutedWriter, Selection


class AdaptiveWriter(RoutedWriter):
    def attention(self, layer: int, h: str, key_bias: str, sel: Selection) -> str:
        g, p, d = self.g, f"blocks.{layer}.attn", self.cfg.d_model
        kmax = g.reduce("ReduceMax", sel.k, [0], False)  # (1,)
        heads = g.op("Slice", sel.ranking, g.const([0]), kmax, g.const([1]), name=f"{p}.heads")  # (B, kmax)
        live = g.op("Slice", g.op("Cast", sel.active, to=g.float_type), g.const([0]), kmax, g.const([1]))
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
