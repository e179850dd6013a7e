"""The trt-plugin flavor: the adaptive graph (trunk and router op for op) with each attention
block as ONE BudgetedAttention custom node, the TensorRT plugin of converters/tensorrt/plugin.py
(whose docstring gives the node's signature and naming scheme); ONNX Runtime runs the node
through bfexport/ort_custom_ops.py."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from bfexport.names import ATTENTION_MASK, ONNX_DOMAIN, PLUGIN_ID, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION
from converters.onnx.router import RoutedWriter, Selection


class TrtPluginWriter(RoutedWriter):
    _mask: str | None = None  # the attention mask in the graph's float type, shared by all layers

    def doc(self) -> str:
        return (f"BudgetFormer exported by bfexport, flavor {self.config.flavor}: attention blocks are "
                f"{PLUGIN_NAME} nodes (TensorRT plugin {PLUGIN_ID} v{PLUGIN_VERSION}; "
                f"ONNX Runtime custom op in {ONNX_DOMAIN})")

    def build(self) -> onnx.ModelProto:
        proto = super().build()
        proto.opset_import.append(helper.make_opsetid(ONNX_DOMAIN, 1))
        return proto

    def attention(self, layer: int, h: str, key_bias: str, sel: Selection) -> str:
        g, p, cfg = self.g, f"blocks.{layer}.attn", self.cfg
        H, dh = cfg.n_heads, cfg.d_head
        if self._mask is None:
            self._mask = g.op("Cast", ATTENTION_MASK, to=g.float_type, name="plugin_mask")
        heads = g.op("Cast", self.selected(sel), to=TensorProto.INT32, name=f"{p}.heads")  # (B, H) by rank, -1 past k
        out = g.op(PLUGIN_NAME, h, self._mask, heads,
                   g.weight(f"{p}.qkv_weight", self.w[f"{p}.qkv_weight"]),  # (H, d, 3dh)
                   g.weight(f"{p}.qkv_bias", self.w[f"{p}.qkv_bias"]),  # (H, 3dh)
                   g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"]),  # (H, dh, d)
                   g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]),  # (d,)
                   name=f"{p}.budgeted_attention", domain=ONNX_DOMAIN, plugin_namespace=PLUGIN_NAMESPACE,
                   plugin_version=PLUGIN_VERSION, aot=1, num_heads=H, head_dim=dh)  # (B, S, d) float32
        if g.float_type != TensorProto.FLOAT:
            out = g.op("Cast", out, to=g.float_type, name=f"{p}.out_cast")
        return out
