"""The arithmetic of the Pareto benchmark: paired tests and matched-cost comparisons (no model here).

Exact McNemar: on the same test texts, only the discordant pairs (one model right, the other
wrong) carry information; under H0 each discordant pair is a fair coin, so the two-sided p-value
is the binomial probability of a split at least as uneven as the one seen. Written out here so
the benchmark needs no scipy.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for two classifiers' per-example correctness (same examples)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same examples: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def best_at_cost(rows: list[dict[str, Any]], kinds: set[str], ceiling: float,
                 slack: float = 0.005) -> dict[str, Any] | None:
    """The most accurate row of `kinds` whose FLOPs ratio is at most `ceiling` (+ slack), cheaper on ties."""
    fit = [r for r in rows if r["kind"] in kinds and r["flops_ratio"] <= ceiling + slack]
    return max(fit, key=lambda r: (r["accuracy"], -r["flops_ratio"]), default=None)


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows no other row beats on both accuracy and FLOPs ratio, cheapest first."""
    front = [r for r in rows if not any(o["accuracy"] >= r["accuracy"] and o["flops_ratio"] < r["flops_ratio"]
                                        or o["accuracy"] > r["accuracy"] and o["flops_ratio"] <= r["flops_ratio"]
                                        for o in rows)]
    return sorted(front, key=lambda r: r["flops_ratio"])
