"""What a sweep runs: model shapes, the default cells of a quick and a full run, the forced budgets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bfexport.model import BudgetFormerConfig

FUSION_MODES = ("dense", "all", "none")  # which graphs go through the transformers optimizer
MAX_BATCH_ACTIVATION = 2 ** 21  # batch > 1 cells above this many activation values are skipped


@dataclass(frozen=True)
class ModelShape:
    """The sizes that matter for timing; weights are random."""

    name: str
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    vocab_size: int = 8000

    def config(self, max_length: int) -> BudgetFormerConfig:
        return BudgetFormerConfig(vocab_size=self.vocab_size, max_length=max_length, d_model=self.d_model,
                                  n_heads=self.n_heads, n_layers=self.n_layers, d_ff=self.d_ff, dropout=0.0)


SHIPPED = ModelShape("shipped", d_model=128, n_heads=8, n_layers=4, d_ff=512)
# BERT-base widths (d 768, 12 heads, FFN 3072) with 4 of its 12 layers: every ratio here is a
# per-layer quantity (the cost model's ideal differs by < 0.001% between 4 and 12 layers), and
# 4 layers keep the standard sweep under ~10 minutes on 2 cores. --bert-layers 12 for the full depth.
# The vocabulary stays 8000: the embedding is one Gather, its size changes no timing, and a
# 30522-row table would only slow down exporting and the optimizer.
BERT_BASE = ModelShape("bert-base", d_model=768, n_heads=12, n_layers=4, d_ff=3072)


# The wide shape of the sweep: wider, more heads and deeper than the shipped model, where weight
# reads (not attention) dominate short inputs.
WIDE = ModelShape("wide", d_model=512, n_heads=16, n_layers=6, d_ff=2048)


def bert_shape(layers: int) -> ModelShape:
    """The BERT-base widths at `layers` layers."""
    return ModelShape(BERT_BASE.name, BERT_BASE.d_model, BERT_BASE.n_heads, layers, BERT_BASE.d_ff,
                      BERT_BASE.vocab_size)


@dataclass(frozen=True)
class Sweep:
    """The cells and seconds per cell a run takes when no option says otherwise."""

    seqs: tuple[int, ...]
    threads: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    min_time_s: float
    fractions: tuple[float, ...] = (0.5, 1.0)  # forced k = fraction * H at batch 1 (batch > 1: H/2 per-sample mean)


FULL = Sweep(seqs=(1, 8, 32, 128, 512), threads=(1, 2), batch_sizes=(1, 8, 32), min_time_s=2.0)
QUARTERS = (0.25, 0.5, 0.75, 1.0)


def quick_sweep(max_length: int) -> Sweep:
    """A quick run: the model's own length, one thread, batch 1."""
    return Sweep(seqs=(max_length,), threads=(1,), batch_sizes=(1,), min_time_s=1.0)


def budgets(n_heads: int, fractions: tuple[float, ...] = QUARTERS) -> list[int]:
    """k = fraction * H for each fraction (default H/4, H/2, 3H/4, H), rounded, at least 1, without repeats."""
    out: list[int] = []
    for fraction in fractions:
        k = min(n_heads, max(1, int(math.floor(n_heads * fraction + 0.5))))
        if k not in out:
            out.append(k)
    return out


def per_sample_caps(rng: np.random.Generator, batch: int, n_layers: int, n_heads: int, target: int) -> np.ndarray:
    """(batch, n_layers) random head caps within +-max(1, H/4) of target, clipped to [1, H]
    (so the spread is one-sided at the ends), then nudged until each layer's mean is exactly target.
    """
    width = max(1, n_heads // 4)
    lo, hi = max(1, target - width), min(n_heads, target + width)
    caps = rng.integers(lo, hi + 1, size=(batch, n_layers))
    for layer in range(n_layers):
        col = caps[:, layer]
        goal = int(np.clip(target * batch, lo * batch, hi * batch))
        while col.sum() != goal:
            step = -1 if col.sum() > goal else 1
            movable = np.flatnonzero(col > lo) if step < 0 else np.flatnonzero(col < hi)
            col[rng.choice(movable)] += step
    return caps.astype(np.int64)
