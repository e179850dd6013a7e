"""The cost model (multiply-accumulates, batch 1) behind every FLOPs figure and ideal speedup.

Per layer at sequence length L, width d, head width dh, FFN width f, k heads:
  QKV projection 3*L*d*(k*dh), scores L^2*(k*dh), weighted sum L^2*(k*dh),
  output projection L*(k*dh)*d, FFN 2*L*d*f, plus the router (pooling L*d, logits d*2H).
Outside the layers: mean pooling L*d (first-token pooling is free), the pooler d*d when the
config has one, the classifier d*n_labels. LayerNorms, activations and embedding lookups
are not counted (no multiply-accumulates to speak of, and the same at every budget).
FLOPs = 2 * MACs. The ideal speedup at budget k is dense cost / this cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bfexport.flavors import ExportConfig
from bfexport.model import BudgetFormerConfig


def attention_macs(config: BudgetFormerConfig, seq_len: int, k: int) -> int:
    """One layer's attention over k heads: QKV and output projections, scores, weighted sum."""
    L, d, width = seq_len, config.d_model, k * config.d_head
    return 3 * L * d * width + 2 * L * L * width + L * width * d


def layer_macs(config: BudgetFormerConfig, seq_len: int, k: int, *, router: bool = True) -> int:
    L, d, f, H = seq_len, config.d_model, config.d_ff, config.n_heads
    return attention_macs(config, seq_len, k) + 2 * L * d * f + ((L * d + d * 2 * H) if router else 0)


def model_macs(config: BudgetFormerConfig, seq_len: int, heads_per_layer: Sequence[int] | None = None, *,
               router: bool = True) -> int:
    """Encoder + pooling + classifier. heads_per_layer None is the dense model: every head, no router."""
    if heads_per_layer is None:
        heads_per_layer, router = [config.n_heads] * config.n_layers, False
    layers = sum(layer_macs(config, seq_len, int(k), router=router) for k in heads_per_layer)
    d = config.d_model
    pooling = seq_len * d if config.pooling == "mean" else 0
    pooler = d * d if config.pooler != "none" else 0
    return layers + pooling + pooler + d * config.n_labels


def attention_share(config: BudgetFormerConfig, lengths: Sequence[int] | np.ndarray) -> float:
    """The dense model's attention MACs over its total, on samples of these lengths: the most
    that skipping heads can save."""
    attention = sum(config.n_layers * attention_macs(config, int(n), config.n_heads) for n in lengths)
    return attention / sum(model_macs(config, int(n)) for n in lengths)


def computed_heads(kind: type[ExportConfig], head_counts: np.ndarray, n_heads: int) -> tuple[np.ndarray, bool]:
    """Heads a graph of flavor `kind` actually computes per (sample, layer), and whether it runs a router.

    A flavor that computes every head (masked, dense) does so whatever the router chose; the
    others compute the heads they report.
    """
    if kind.computes_all_heads:
        return np.full_like(head_counts, n_heads), kind.routed
    return head_counts, kind.routed


def flops_ratio(config: BudgetFormerConfig, lengths: Sequence[int] | np.ndarray, head_counts: np.ndarray, *,
                router: bool = True) -> float:
    """Mean cost at the given per-sample head counts (N, n_layers) over mean dense cost."""
    spent = sum(model_macs(config, int(n), row, router=router) for n, row in zip(lengths, head_counts, strict=True))
    dense = sum(model_macs(config, int(n)) for n in lengths)
    return spent / dense


def per_layer_macs(config: BudgetFormerConfig, lengths: Sequence[int] | np.ndarray, head_counts: np.ndarray | None,
                   *, router: bool = True) -> list[float]:
    """Mean MACs of each layer over the samples; head_counts None = dense."""
    if head_counts is None:
        head_counts, router = np.full((len(lengths), config.n_layers), config.n_heads), False
    return [float(np.mean([layer_macs(config, int(n), int(k), router=router)
                           for n, k in zip(lengths, head_counts[:, layer], strict=True)]))
            for layer in range(config.n_layers)]
