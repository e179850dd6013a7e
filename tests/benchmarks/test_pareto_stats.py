"""The Pareto benchmark's arithmetic: exact McNemar, the best static baseline at a cost, the front."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.pareto_stats import best_at_cost, markdown, mcnemar_exact, pareto_front, seed_summary, sign_flip_exact


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
    assert best_at_cost(ROWS, {"static"}, 0.696)["name"] == "s2"  # within the default slack
    assert best_at_cost(ROWS, {"static"}, 0.696, slack=0.0)["name"] == "s1"  # budget_headroom's strict ceiling


def test_pareto_front_drops_dominated_rows() -> None:
    assert [r["name"] for r in pareto_front(ROWS)] == ["s1", "a1", "s2", "s3"]


def test_markdown_names_each_adaptive_point_and_its_static_rival() -> None:
    result = {"dataset": "d", "test_rows": 10, "mean_test_tokens": 12.0, "attention_flops_share_dense": 0.4,
              "seconds": 1.0, "goals": {"dense_accuracy": 0.8}, "rows": [{"name": "a1", "adaptive_layers": 1}],
              "comparisons": [{"adaptive": "a1", "flops_ratio": 0.6, "accuracy": 0.75, "vs_dense": -0.05,
                               "p_vs_dense": 0.2, "best_static": "s1", "best_static_flops_ratio": 0.5,
                               "best_static_accuracy": 0.7, "vs_static": 0.05, "p_vs_static": 0.03}]}
    table = markdown(result).splitlines()
    assert table[-1] == "| a1 | 1 | 0.600 | 0.7500 | -0.0500 (0.2) | s1 | 0.500 | 0.7000 | +0.0500 (0.03) |"


def test_sign_flip_counts_the_patterns_at_least_as_extreme() -> None:
    # 4 positive differences: only all-plus and all-minus reach |mean| 1.5, 2 of 16 patterns
    assert sign_flip_exact([1.0, 1.0, 2.0, 2.0]) == pytest.approx(2 / 16)
    # +3, -1: patterns (+3,-1), (-3,+1) reach |mean| 1; (+3,+1), (-3,-1) reach 2: all 4
    assert sign_flip_exact([3.0, -1.0]) == 1.0
    assert sign_flip_exact([0.0, 0.0, 0.0]) == 1.0


def test_sign_flip_refuses_too_many_seeds() -> None:
    with pytest.raises(ValueError, match="1 to 20"):
        sign_flip_exact(np.ones(21))


def test_seed_summary_counts_seeds_each_way_and_skips_a_rival_some_seeds_lack() -> None:
    seeds = [{"vs_static": 0.02, "vs_dense": -0.01, "vs_dense_tuned": None},
             {"vs_static": 0.01, "vs_dense": 0.0, "vs_dense_tuned": 0.01},
             {"vs_static": -0.03, "vs_dense": 0.02}]
    summary = seed_summary(seeds)
    assert summary["seeds"] == 3 and "vs_dense_tuned" not in summary
    assert summary["vs_static"]["mean"] == pytest.approx(0.0)
    assert (summary["vs_static"]["above"], summary["vs_static"]["below"]) == (2, 1)
    assert (summary["vs_dense"]["above"], summary["vs_dense"]["below"]) == (1, 1)  # a tie counts neither way
    assert summary["vs_static"]["sign_flip_p"] == 1.0
