"""Timed rows and cells, and the arithmetic on them: ideal speedups from the cost model, speedup,
efficiency and overheads against the cell's dense reference.

  ideal speedup  = dense MACs / variant MACs (bfexport.cost, router included for adaptive)
  speedup        = dense reference median / variant median
  efficiency     = speedup / ideal
  overhead       = adaptive median / static median at the same k - 1   (batch 1)
  vs hf          = median / the Hugging Face peer's pruned median at the same k - 1 (static, adaptive)

Peer rows (the Hugging Face export) are never the dense reference nor the static row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bfexport.cost import model_macs
from bfexport.errors import BfexportError
from bfexport.flavors import AdaptiveExport, DenseExport, ExportConfig, StaticExport, flavor_named
from bfexport.model import BudgetFormerConfig


def ideal_speedup(config: BudgetFormerConfig, seq_len: int, heads_per_layer: Sequence[int] | None, *,
                  router: bool) -> float:
    """Dense MACs / the variant's MACs at batch 1 (None = dense)."""
    if heads_per_layer is None:
        return 1.0
    return model_macs(config, seq_len) / model_macs(config, seq_len, heads_per_layer, router=router)


def ideal_batch(config: BudgetFormerConfig, seq_len: int, caps: np.ndarray, *,
                router: bool = True) -> tuple[float, float]:
    """Adaptive at per-sample head counts caps (batch, n_layers): (ideal from the padded k the
    graph computes, the batch's largest k per layer; ideal from each sample's own k)."""
    batch = caps.shape[0]
    dense = batch * model_macs(config, seq_len)
    padded = batch * model_macs(config, seq_len, caps.max(axis=0).tolist(), router=router)
    own = sum(model_macs(config, seq_len, row.tolist(), router=router) for row in caps)
    return dense / padded, dense / own


def efficiency(speedup: float, ideal: float) -> float:
    return speedup / ideal


def overhead(time_s: float, reference_s: float) -> float:
    """How much slower than the reference: 0.03 = 3% slower."""
    return time_s / reference_s - 1.0


@dataclass
class Row:
    """One timed variant in one cell. k: heads per layer (batch > 1: the per-sample mean)."""

    variant: str  # dense, dense+ortopt, dense-mha+ortopt, dense-attn23+ortopt, masked, static, adaptive
    flavor: str  # dense, masked, static, adaptive
    k: float | None  # None for dense variants
    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    ideal: float
    speedup: float = float("nan")  # dense reference / this
    efficiency: float = float("nan")  # speedup / ideal
    overhead_vs_static: float | None = None  # adaptive, batch 1
    overhead_vs_dense: float | None = None  # adaptive at k = H, batch 1
    vs_hf: float | None = None  # static and adaptive: vs the peer's pruned graph at the same k
    k_padded: list[int] | None = None  # batch > 1: per layer, the largest k in the batch
    ideal_per_sample: float | None = None  # batch > 1: ideal from each sample's own k
    efficiency_per_sample: float | None = None
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    items_per_s: float = float("nan")  # batch * runs / time of the runs
    peer: bool = False  # the Hugging Face peer

    @property
    def kind(self) -> type[ExportConfig]:
        """The config type of the row's flavor (the JSON keeps the name)."""
        return flavor_named(self.flavor)


@dataclass
class Cell:
    model: str
    seq: int
    threads: int
    batch: int
    n_heads: int
    dense_reference: str  # the fastest dense variant (its row has speedup 1)
    rounds: int
    rows: list[Row]

    @property
    def label(self) -> str:
        return f"{self.model} seq {self.seq} batch {self.batch} threads {self.threads}"

    def row(self, variant: str, k: float | None = None) -> Row | None:
        return next((r for r in self.rows if r.variant == variant and (k is None or r.k == k)), None)


def compute_rows(rows: list[Row], batch: int, n_heads: int) -> str:
    """Fill speedup, efficiency and overheads in place from the medians; returns the dense reference.

    Dense reference = the (non-peer) dense variant with the lowest median.
    """
    dense = [r for r in rows if r.kind is DenseExport and not r.peer]
    if not dense:
        raise BfexportError("no dense variant was timed: nothing to compare against")
    reference = min(dense, key=lambda r: r.median_ms)
    for r in rows:
        r.speedup = reference.median_ms / r.median_ms
        r.efficiency = efficiency(r.speedup, r.ideal)
        if r.ideal_per_sample is not None:
            r.efficiency_per_sample = efficiency(r.speedup, r.ideal_per_sample)
        peer = next((s for s in rows if s.peer and s.kind is StaticExport and s.k == r.k), None)
        if peer is not None and not r.peer and r.kind in (StaticExport, AdaptiveExport):
            r.vs_hf = overhead(r.median_ms, peer.median_ms)
        if r.kind is AdaptiveExport and batch == 1:
            static = next((s for s in rows if s.kind is StaticExport and not s.peer and s.k == r.k), None)
            if static is not None:
                r.overhead_vs_static = overhead(r.median_ms, static.median_ms)
            if r.k == n_heads:
                r.overhead_vs_dense = overhead(r.median_ms, reference.median_ms)
    return reference.variant
