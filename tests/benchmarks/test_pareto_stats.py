"""The Pareto benchmark's arithmetic: exact McNemar, the best static baseline at a cost, the front."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.pareto_stats import best_at_cost, mcnemar_exact, pareto_front


def test_mcnemar_exact_matches_the_binomial_by_hand() -> None:
    # 1 vs 7 discordant pairs: p = 2 * (C(8,0) + C(8,1)) / 2^8 = 18 / 256
    a = np.array([1] * 1 + [0] * 7 + [1] * 20 + [0] * 5, bool)
    b = np.array([0] * 1 + [1] * 7 + [1] * 20 + [0] * 5, bool)
    assert mcnemar_exact(a, b) == pytest.approx(18 / 256)
    assert mcnemar_exact(b, a) == pytest.approx(18 / 256)


def test_mcnemar_without_discordant_pairs_or_balanced_is_one() -> None:
    same = np.array([1, 0, 1, 1], bool)
    assert mcnemar_exact(same, same) == 1.0
    assert mcnemar_exact(np.array([1, 0], bool), np.array([0, 1], bool)) == 1.0


def test_mcnemar_refuses_unpaired_inputs() -> None:
    with pytest.raises(ValueError, match="same examples"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


ROWS = [{"name": "s1", "kind": "static", "flops_ratio": 0.5, "accuracy": 0.70},
        {"name": "s2", "kind": "static", "flops_ratio": 0.7, "accuracy": 0.80},
        {"name": "s3", "kind": "static", "flops_ratio": 0.72, "accuracy": 0.85},
        {"name": "a1", "kind": "adaptive", "flops_ratio": 0.6, "accuracy": 0.75},
        {"name": "a2", "kind": "adaptive", "flops_ratio": 0.8, "accuracy": 0.79}]


def test_best_static_at_cost_never_spends_past_the_ceiling() -> None:
    assert best_at_cost(ROWS, {"static"}, 0.69)["name"] == "s1"
    assert best_at_cost(ROWS, {"static"}, 0.70)["name"] == "s2"  # s3 costs 0.02 more: outside the 0.005 slack
    assert best_at_cost(ROWS, {"static"}, 0.4) is None


def test_pareto_front_drops_dominated_rows() -> None:
    assert [r["name"] for r in pareto_front(ROWS)] == ["s1", "a1", "s2", "s3"]
