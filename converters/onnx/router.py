"""The router in the graph, shared by the routed flavors (adaptive, masked, trt-plugin): the
budget inputs and, per layer, each sample's k and head ranking (Router.select)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from bfexport.names import BUDGET_THRESHOLDS, HEAD_CAPS, SELECTED_HEADS, router_tail
from converters.onnx.graph import INT64
from converters.onnx.trunk import GraphWriter


@dataclass(frozen=True)
class Selection:
    """One layer's router output, as the names of its graph tensors."""

    k: str  # (B, 1) int64: heads each sample runs, min(budget, cap)
    ranking: str  # (B, H) int64: heads by relevance, ties to the lower index


class RoutedWriter(GraphWriter):
    """A graph with the router: budget_thresholds and head_caps inputs (overridable
    initializers holding the checkpoint's values); a subclass writes `attention`."""

    levels: list[str]  # per layer (rows, 1): 1 - tau, set by budget_inputs()
    caps: list[str]  # per layer (rows, 1): head caps, set by budget_inputs()

    def budget_inputs(self) -> None:
        g, cfg = self.g, self.cfg
        L = cfg.n_layers
        tau = g.input(BUDGET_THRESHOLDS, TensorProto.FLOAT, ["threshold_rows", L],
                      np.asarray([cfg.budget_thresholds], dtype=np.float32))
        if self.config.fp16:
            tau = g.op("Cast", tau, to=g.float_type, name="budget_thresholds_fp16")
        levels = g.op("Sub", g.const(1.0), tau, name="tail_levels")  # (rows, L): 1 - tau, once for all layers
        caps = g.input(HEAD_CAPS, INT64, ["cap_rows", L], np.asarray([cfg.head_caps], dtype=np.int64))
        self.levels, self.caps = self.columns(levels, "tail_level"), self.columns(caps, "head_cap")

    def columns(self, x: str, name: str) -> list[str]:
        """x (rows, L) as L (rows, 1) columns: one Split for all layers, not a Gather per layer."""
        L = self.cfg.n_layers
        if L == 1:
            return [x]
        return self.g.op("Split", x, self.g.const([1] * L), axis=1, outputs=L, name=name)

    def block(self, layer: int, h: str, key_bias: str, pool: str, length: str) -> tuple[str, str, str]:
        """Routed blocks hand on their ranking; selected_heads() masks every layer's at once."""
        sel = self.route(layer, h, pool)
        return self.attention(layer, h, key_bias, sel), sel.k, sel.ranking

    def selected_heads(self, counts: str, per_layer: list[str]) -> None:
        """Each layer's ranking (B, H) past its k (head_counts) set to -1: three ops for all layers, not per layer."""
        g, L, H = self.g, self.cfg.n_layers, self.cfg.n_heads
        ranking = g.op("Reshape", g.op("Concat", *per_layer, axis=1), g.const([0, L, H]))  # (B, L, H)
        active = g.op("Less", g.const(np.arange(H)), g.op("Unsqueeze", counts, g.const([2])))  # (B, L, H)
        g.op("Where", active, ranking, g.const(-1), name=SELECTED_HEADS)

    def active(self, sel: Selection) -> str:
        """(B, H) bool: rank slot r < k, for the attention paths that need it."""
        return self.g.op("Less", self.g.const(np.arange(self.cfg.n_heads)[None, :]), sel.k)

    def selected(self, sel: Selection) -> str:
        """(B, H) int64: the heads by rank, -1 past k."""
        return self.g.op("Where", self.active(sel), sel.ranking, self.g.const([[-1]]))

    def attention(self, layer: int, h: str, key_bias: str, sel: Selection) -> str:
        """Layer `layer`'s attention over the heads `sel` chose: (B, S, d)."""
        raise NotImplementedError

    def route(self, layer: int, h: str, pool: str) -> Selection:
        """The router: k per sample and the heads ranked by relevance (Router.select)."""
        g, H, p = self.g, self.cfg.n_heads, f"blocks.{layer}.attn.router"
        summary = g.op("MatMul", pool, h, name=f"{p}.summary")  # (B, 1, d)
        logits = g.linear(g.op("Reshape", summary, g.const([0, self.cfg.d_model])),
                          self.w[f"{p}.proj.weight"], self.w[f"{p}.proj.bias"], f"{p}.proj")  # (B, 2H)
        budget, relevance = g.op("Split", logits, g.const([H, H]), axis=1, outputs=2,
                                 name=f"{p}.budget_relevance")  # (B, H) each
        # P(K > k) for k = 1..H-1 (Router.budget): reverse cumulative sum, first entry dropped
        tail = g.op("CumSum", g.op("Softmax", budget, axis=-1), g.const(1), reverse=1,
                    name=router_tail(layer))  # (B, H)
        # k = 1 + #{k' = 1..H-1 : P(K > k') > 1 - tau}, counted over the whole tail: its first entry
        # P(K > 0) = 1 counts as the 1 whenever it is above the level, and when it is not (rounding,
        # tau near 0) no later, smaller entry is either, so max(count, 1) is exactly that k
        above = g.op("Cast", g.op("Greater", tail, self.levels[layer]), to=INT64)  # level (rows, 1): 1 - tau_l
        k = g.op("Max", g.reduce("ReduceSum", above, [1], True), g.const([[1]]))  # (B, 1)
        k = g.op("Min", k, self.caps[layer], name=f"blocks.{layer}.k")  # (B, 1)
        _, ranking = g.op("TopK", relevance, g.const([H]), axis=-1, largest=1, sorted=1, outputs=2,
                          name=f"{p}.ranking")  # (B, H) ties to the lower index
        return Selection(k=k, ranking=ranking)

    def head_mask(self, sel: Selection, name: str) -> str:
        """(B, H) float: 1 for the heads a sample selected, 0 for the others."""
        g = self.g
        zeros = g.op("Mul", g.op("Cast", sel.ranking, to=g.float_type), g.const(0.0))
        return g.op("ScatterElements", zeros, sel.ranking, g.op("Cast", self.active(sel), to=g.float_type),
                    axis=1, name=f"{name}.head_mask")
