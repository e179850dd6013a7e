"""The arithmetic of the Pareto benchmark: paired tests and matched-cost comparisons (no model here).

Exact McNemar: on the same test texts, only the discordant pairs (one model right, the other
wrong) carry information; under H0 each discordant pair is a fair coin, so the two-sided p-value
is the binomial probability of a split at least as uneven as the one seen. Across seeds, the exact
sign-flip test: under H0 each seed's difference is as likely to have come out with the other sign,
so the p-value is the share of the 2^n sign patterns whose mean is at least as far from zero.
Written out here so the benchmark needs no scipy.
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


def sign_flip_exact(differences: list[float] | np.ndarray) -> float:
    """Two-sided exact paired randomization p-value of the mean of per-seed differences (n <= 20)."""
    d = np.asarray(differences, float)
    if d.ndim != 1 or not 1 <= d.size <= 20:
        raise ValueError(f"sign-flip test needs 1 to 20 differences, got shape {d.shape}")
    signs = 1 - 2 * ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1)  # (2^n, n) of +-1
    means = np.abs(signs @ d) / d.size
    return float(np.mean(means >= abs(d.mean()) - 1e-12))


RIVALS = {"vs_static": "the best static baseline", "vs_dense": "the dense twin",
          "vs_dense_tuned": "the dense twin after the fine-tune epochs (the same step budget as a fine-tuned point)"}


def seed_summary(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rival that every seed was scored against (runs from before the tuned twin lack it): the mean
    difference, how many seeds came out above and below it, and the exact sign-flip p-value."""
    summary: dict[str, Any] = {"seeds": len(seeds)}
    for key in (k for k in RIVALS if all(s.get(k) is not None for s in seeds)):
        d = np.array([s[key] for s in seeds], float)
        summary[key] = {"mean": float(d.mean()), "above": int((d > 0).sum()), "below": int((d < 0).sum()),
                        "sign_flip_p": sign_flip_exact(d)}
    return summary


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


def markdown(result: dict[str, Any]) -> str:
    """The README table: each adaptive point vs the best static baseline at no more FLOPs and the dense twin."""
    g = result["goals"]
    lines = [f"dataset `{result['dataset']}`: {result['test_rows']} test texts, mean {result['mean_test_tokens']:.0f} "
             f"tokens, attention {result['attention_flops_share_dense']:.0%} of dense FLOPs; dense twin accuracy "
             f"{g['dense_accuracy']:.4f}; {result['seconds']:.0f} s in all",
             "",
             "| adaptive point | layers with k varying | FLOPs ratio | acc | vs dense (p) | best static at <= FLOPs "
             "| its FLOPs | its acc | adaptive - static (p) |",
             "|---|---|---|---|---|---|---|---|---|"]
    varying = {r["name"]: r.get("adaptive_layers") for r in result["rows"]}
    for c in result["comparisons"]:
        static = ("-", "-", "-", "-") if c["best_static"] is None else (
            c["best_static"], f"{c['best_static_flops_ratio']:.3f}", f"{c['best_static_accuracy']:.4f}",
            f"{c['vs_static']:+.4f} ({c['p_vs_static']:.3g})")
        lines.append(f"| {c['adaptive']} | {varying[c['adaptive']]} | {c['flops_ratio']:.3f} | {c['accuracy']:.4f} | "
                     f"{c['vs_dense']:+.4f} ({c['p_vs_dense']:.3g}) | " + " | ".join(static) + " |")
    return "\n".join(lines) + "\n"
