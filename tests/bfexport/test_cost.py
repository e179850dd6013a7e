"""The cost model of the design brief, section 3."""

from __future__ import annotations

import numpy as np
import pytest

from bfexport import cost
from bfexport.flavors import MaskedExport, StaticExport
from tests.factories import VARIANTS, tiny_config


def test_layer_cost_matches_the_brief_formula() -> None:
    cfg = tiny_config()  # d 32, H 4, dh 8, f 64
    L, d, dh, f, k = 10, 32, 8, 64, 3
    expected = 3 * L * d * k * dh + 2 * L * L * k * dh + L * k * dh * d + 2 * L * d * f
    assert cost.layer_macs(cfg, L, k, router=False) == expected
    assert cost.layer_macs(cfg, L, k) == expected + L * d + d * 2 * 4


def test_ratios_per_flavor() -> None:
    cfg = tiny_config()
    lengths = [5, 17, 32]
    full = np.full((3, cfg.n_layers), cfg.n_heads)
    assert cost.flops_ratio(cfg, lengths, full, router=False) == 1.0  # dense
    assert cost.flops_ratio(cfg, lengths, full) > 1.0  # all heads plus the router
    one = np.ones((3, cfg.n_layers), dtype=int)
    assert cost.flops_ratio(cfg, lengths, one) < cost.flops_ratio(cfg, lengths, 2 * one) < 1.0
    heads, router = cost.computed_heads(MaskedExport, one, cfg.n_heads)
    assert (heads == cfg.n_heads).all() and router  # masked computes every head whatever it reports
    assert cost.computed_heads(StaticExport, one, cfg.n_heads)[1] is False


def test_per_layer_costs_sum_to_the_model_cost() -> None:
    cfg = tiny_config()
    counts = np.array([[1, 2, 4]])
    per_layer = cost.per_layer_macs(cfg, [20], counts)
    total = cost.model_macs(cfg, 20, counts[0])
    assert sum(per_layer) + 20 * cfg.d_model + cfg.d_model * cfg.n_labels == total


@pytest.mark.parametrize("variant", VARIANTS)
def test_outside_the_layers_counts_pooling_pooler_and_classifier(variant: str) -> None:
    cfg = tiny_config(**VARIANTS[variant])
    d, L = cfg.d_model, 20
    pooling = L * d if cfg.pooling == "mean" else 0  # the first token is read, not summed
    pooler = d * d if cfg.pooler != "none" else 0
    layers = sum(cost.layer_macs(cfg, L, 2) for _ in range(cfg.n_layers))
    assert cost.model_macs(cfg, L, [2] * cfg.n_layers) == layers + pooling + pooler + d * cfg.n_labels


def test_attention_share_is_the_attention_part_of_the_dense_cost() -> None:
    cfg = tiny_config(pooler="tanh")
    share = cost.attention_share(cfg, [10, 30])
    attention = sum(3 * cost.attention_macs(cfg, n, cfg.n_heads) for n in (10, 30))
    assert share == attention / (cost.model_macs(cfg, 10) + cost.model_macs(cfg, 30))
    assert cost.attention_macs(cfg, 10, 4) == 2 * cost.attention_macs(cfg, 10, 2)
    assert 0 < cost.attention_share(cfg, [4]) < share < cost.attention_share(cfg, [1000]) < 1  # L^2 terms grow
