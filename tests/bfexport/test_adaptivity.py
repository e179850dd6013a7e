"""summary.adaptivity: whether a layer's budget really varies per input, at a glance."""

from __future__ import annotations

import numpy as np

from bfexport.summary import adaptivity


def test_a_layer_with_one_dominant_budget_is_not_adaptive() -> None:
    counts = np.array([[8, 1, 2]] * 95 + [[7, 2, 3]] * 5)
    counts = np.concatenate([counts, np.array([[8, 3, 2]] * 50)])  # k: layer 1 is 1, 2, 3 on 95, 5, 50 inputs
    layers = adaptivity(counts, 8)
    assert [a["distinct_k"] for a in layers] == [2, 3, 2]
    assert layers[0]["top_k_share"] == round(145 / 150, 4) and not layers[0]["adaptive"]
    assert layers[1]["adaptive"] and layers[1]["std_k"] == round(float(counts[:, 1].std()), 4)
    assert layers[2]["top_k_share"] == round(145 / 150, 4) and not layers[2]["adaptive"]


def test_two_budgets_at_exactly_ten_percent_count_as_adaptive() -> None:
    counts = np.array([[1]] * 90 + [[4]] * 10)
    assert adaptivity(counts, 4) == [{"distinct_k": 2, "std_k": round(float(counts.std()), 4), "top_k_share": 0.9,
                                      "adaptive": True}]
