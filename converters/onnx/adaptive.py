"""The adaptive flavor: the router picks each sample's k and heads, and each layer's attention
computes the selected heads by the cheapest of three paths for the shapes at hand, chosen in
the graph per call (an `If` on batch, seq and the router's k; benchmarks/README.md has the
measurements behind the rule):

  shared  batch 1 and k < H: the sample's heads' Q/K/V/O weight slices gathered (one
          contiguous Gather per weight) and one broadcast MatMul; every slot is live, so
          nothing is zeroed.
  pairs   batch > 1, seq >= PAIRS_MIN_SEQ and some head skipped: one (sample, head) pair per
          selected head; the pairs' Q/K/V projections and attention computed side by side
          (the key bias folded into the score dot products, so no per-pair S x S mask), each
          pair's context written to its (sample, slot) and one output projection per sample
          over its slots. Each sample pays for its own k in the projections and attention,
          and for the batch's largest k only in the output projection's zero slots.
  packed  otherwise (short batched inputs, or every head selected): every head with the
          dense projections (constant weights, pre-packed by ONNX Runtime), the unselected
          heads' outputs zeroed. Per-sample weight copies would cost more than the heads
          they skip there.

Every path runs exactly the router's heads (pairs, shared) or zeroes exactly the others
(packed), so head_counts, selected_heads and the logits are the same whichever runs. The
file stores the per-head weights in the state_dict's layout (converters/onnx/rebuild.py reads
them back); the other layouts are Transpose/Reshape nodes of them, written in the branch that
reads them and folded to constants when ONNX Runtime loads the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from converters.onnx.router import RoutedWriter, Selection

PAIRS_MIN_SEQ = 32  # below this, a batch's per-pair weight copies cost more than the skipped heads


@dataclass(frozen=True)
class _Weights:
    """One layer's attention weights as graph tensors, in each layout a path reads."""

    qkv: str  # (H, d, 3dh) per head: shared and pairs gather on axis 0
    qkv_bias: str  # (H, 1, 3dh)
    out: str  # (H, dh, d) per head: shared and pairs gather on axis 0
    out_bias: str  # (d,)


class AdaptiveWriter(RoutedWriter):
    _limits: tuple[str, str] | None = None  # shape_limits(), written once per graph
    _columns: tuple[str, str] | None = None  # bias_columns(), written once per graph

    def attention(self, layer: int, h: str, key_bias: str, sel: Selection) -> str:
        g, p = self.g, f"blocks.{layer}.attn"
        w = self.weights(p)
        if g.opset >= 23:
            self.full_bias(key_bias)  # made here, in the outer graph, so every branch can read it
        self.bias_columns(key_bias)  # likewise
        limits = self.shape_limits(h)
        kmax = g.reduce("ReduceMax", sel.k, [0], False)  # (1,)
        paths: dict[str, Callable[[], str]] = {
            "shared": lambda: self.shared(p, h, key_bias, sel, kmax, w),
            "pairs": lambda: self.pairs(p, h, key_bias, sel, kmax, w),
            "packed": lambda: self.packed(p, h, key_bias, sel, w)}
        return self.choose(p, sel, kmax, limits, paths)

    def choose(self, p: str, sel: Selection, kmax: str, limits: tuple[str, str],
               paths: dict[str, Callable[[], str]]) -> str:
        """The Ifs that pick one of `paths` per call, by the rule in the module docstring."""
        g, (shared_limit, pairs_limit) = self.g, limits
        shared = g.op("Less", kmax, shared_limit, name=f"{p}.use_shared")

        def batched() -> str:  # the pairs test runs only here, so batch 1 does not pay for it
            pairs = g.reduce("ReduceSum", sel.k, [0], False)  # (1,) selected (sample, head) pairs
            per_pair = g.op("Less", pairs, pairs_limit, name=f"{p}.use_pairs")
            return g.if_else(per_pair, paths["pairs"], paths["packed"], name=f"{p}.pairs_or_packed")

        return g.if_else(shared, paths["shared"], batched, name=f"{p}.strategy")

    def weights(self, p: str) -> _Weights:
        g = self.g
        return _Weights(qkv=g.weight(f"{p}.qkv_weight", self.w[f"{p}.qkv_weight"]),
                        qkv_bias=g.weight(f"{p}.qkv_bias", self.w[f"{p}.qkv_bias"][:, None, :]),
                        out=g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"]),
                        out_bias=g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]))

    def shape_limits(self, h: str) -> tuple[str, str]:
        """From h (B, S, d), written once per graph, so each layer tests its path with one Less:
        shared runs when its kmax < H if batch == 1, else 0 (never); pairs when its sum of k <
        B * H if seq >= PAIRS_MIN_SEQ, else 0."""
        if self._limits is None:
            g, H = self.g, self.cfg.n_heads
            shape = g.op("Shape", h, name="hidden_shape")
            batch = g.op("Slice", shape, g.const([0]), g.const([1]), name="batch_size")  # (1,)
            seq = g.op("Slice", shape, g.const([1]), g.const([2]))
            never = g.const([0])
            self._limits = (g.op("Where", g.op("Equal", batch, g.const([1])), g.const([H]), never, name="shared_limit"),
                            g.op("Where", g.op("GreaterOrEqual", seq, g.const([PAIRS_MIN_SEQ])),
                                 g.op("Mul", batch, g.const([H])), never, name="pairs_limit"))
        return self._limits

    def shared(self, p: str, h: str, key_bias: str, sel: Selection, kmax: str, w: _Weights) -> str:
        """Batch 1: the sample's k heads' weight slices gathered, one broadcast MatMul; no slot to zero."""
        g = self.g
        heads = g.op("Slice", sel.ranking, g.const([0]), kmax, g.const([1]), name=f"{p}.shared.heads")  # (1, k)
        # h (1, S, d) broadcasts against the gathered (1, k, d, 3dh) as (1, 1, S, d)
        q, k, v = self.per_head_qkv(h, g.op("Gather", w.qkv, heads, axis=0),
                                    g.op("Gather", w.qkv_bias, heads, axis=0), f"{p}.shared")  # (1, k, S, dh)
        ctx = self.attend(q, k, v, key_bias, f"{p}.shared")
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, -1]))  # (1, S, k*dh)
        w_out = g.op("Gather", w.out, heads, axis=0)  # (1, k, dh, d)
        w_out = g.op("Reshape", w_out, g.const([0, -1, self.cfg.d_model]))  # (1, k*dh, d)
        return g.op("Add", g.op("MatMul", ctx, w_out), w.out_bias, name=f"{p}.shared.out")

    def pairs(self, p: str, h: str, key_bias: str, sel: Selection, kmax: str, w: _Weights) -> str:
        """Batch > 1: one (sample, head) pair per selected head, N = sum of k pairs in all."""
        g, dh = self.g, self.cfg.d_head
        active = g.op("Slice", self.active(sel), g.const([0]), kmax, g.const([1]))  # (B, kmax)
        ranking = g.op("Slice", sel.ranking, g.const([0]), kmax, g.const([1]))  # (B, kmax)
        index = g.op("Transpose", g.op("NonZero", active), perm=[1, 0], name=f"{p}.pairs.index")  # (N, 2)
        sample = g.op("Gather", index, g.const(0), axis=1)  # (N,) the pair's sample
        heads = g.op("GatherND", ranking, index, name=f"{p}.pairs.heads")  # (N,) the pair's head
        x = g.op("Gather", h, sample, axis=0)  # (N, S, d)
        qkv = g.op("Add", g.op("MatMul", x, g.op("Gather", w.qkv, heads, axis=0)),
                   g.op("Gather", w.qkv_bias, heads, axis=0), name=f"{p}.pairs.qkv")  # (N, S, 3dh)
        q, k, v = g.op("Split", g.op("Unsqueeze", qkv, g.const([1])), g.const([dh, dh, dh]), axis=-1,
                       outputs=3)  # (N, 1, S, dh)
        # The key bias rides in the scores' dot products: q / sqrt(dh) gets a column of ones and k
        # one of its sample's key bias, so q'k'^T = q k^T / sqrt(dh) + bias with no mask input: no
        # (N, 1, S, S) copy of the bias per pair (which the opset-23 Attention kernel would need)
        # and no (N, 1, S, S) Add (MatMul/Softmax)
        ones, bias = self.bias_columns(key_bias)
        q = g.op("Concat", g.op("Mul", q, g.const(1.0 / math.sqrt(dh))), g.op("Gather", ones, sample, axis=0),
                 axis=-1)  # (N, 1, S, dh + 1)
        k = g.op("Concat", k, g.op("Gather", bias, sample, axis=0), axis=-1)  # (N, 1, S, dh + 1)
        if g.opset >= 23:
            ctx = g.op("Attention", q, k, v, scale=1.0, name=f"{p}.pairs.attention")  # (N, 1, S, dh)
        else:
            scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]), name=f"{p}.pairs.scores")
            ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v, name=f"{p}.pairs.context")  # (N, 1, S, dh)
        ctx = g.op("Squeeze", ctx, g.const([1]))  # (N, S, dh)
        # The batch's ctx to (sample, slot), then one output projection per sample over its slots'
        # heads (empty slots are zeros, so they add nothing): (B, S, kmax*dh) @ (B, kmax*dh, d)
        slots = g.op("Concat", g.op("Shape", active), g.op("Shape", ctx, start=1), axis=0)  # (B, kmax, S, dh)
        ctx = g.op("ScatterND", g.op("Expand", g.const(0.0), slots), index, ctx,
                   name=f"{p}.pairs.scatter")  # (B, kmax, S, dh)
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, -1]))  # (B, S, kmax*dh)
        w_out = g.op("Reshape", g.op("Gather", w.out, ranking, axis=0), g.const([0, -1, self.cfg.d_model]))
        return g.op("Add", g.op("MatMul", ctx, w_out), w.out_bias, name=f"{p}.pairs.out")

    def bias_columns(self, key_bias: str) -> tuple[str, str]:
        """key_bias (B, 1, 1, S) as a column (B, 1, S, 1), and a column of ones beside it; once per graph."""
        if self._columns is None:
            g = self.g
            bias = g.op("Reshape", key_bias, g.const([0, 1, -1, 1]), name="key_bias_column")
            self._columns = (g.op("Expand", g.const([[[[1.0]]]]), g.op("Shape", bias), name="ones_column"), bias)
        return self._columns

    def packed(self, p: str, h: str, key_bias: str, sel: Selection, w: _Weights) -> str:
        """Every head with the dense weights; the heads a sample did not select are zeroed.

        The dense layouts are Transpose/Reshape nodes of the per-head weights written here, in
        this path's own branch, so ONNX Runtime folds them into that branch's constants and
        pre-packs them for its MatMuls. Written in the outer graph, two Ifs up, they were not
        pre-packed (ONNX Runtime 1.32, measured) and every call packed them again: the Ifs
        cost +40% at batch 8 seq 1 on the wide shape (benchmarks/adaptive_overhead.py)."""
        g, H, dh, d = self.g, self.cfg.n_heads, self.cfg.d_head, self.cfg.d_model
        qkv_dense = g.op("Reshape", g.op("Transpose", w.qkv, perm=[1, 0, 2]), g.const([d, H * 3 * dh]),
                         name=f"{p}.qkv_dense")  # (d, H*3dh)
        qkv = g.op("Add", g.op("MatMul", h, qkv_dense), g.op("Reshape", w.qkv_bias, g.const([-1])),
                   name=f"{p}.packed.qkv")  # (B, S, H*3dh)
        qkv = g.op("Transpose", g.op("Reshape", qkv, g.const([0, 0, H, 3 * dh])), perm=[0, 2, 1, 3])  # (B, H, S, 3dh)
        q, k, v = g.op("Split", qkv, g.const([dh, dh, dh]), axis=-1, outputs=3)
        ctx = self.attend(q, k, v, key_bias, f"{p}.packed")  # (B, H, S, dh)
        ctx = g.op("Mul", ctx, g.op("Unsqueeze", self.head_mask(sel, f"{p}.packed"), g.const([2, 3])))
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), g.const([0, 0, H * dh]))  # (B, S, H*dh)
        out_dense = g.op("Reshape", w.out, g.const([H * dh, d]), name=f"{p}.out_dense")  # (H*dh, d)
        return g.op("Add", g.op("MatMul", ctx, out_dense), w.out_bias, name=f"{p}.packed.out")
