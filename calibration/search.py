"""Per-layer threshold and cap search under a cost ceiling.

Two stages, both driven by an `evaluate(configs, exact) -> points` callable so the search
knows nothing about ONNX Runtime or about what the cost is (FLOP ratio or predicted ms):

1. The single global threshold sweep (tau on a grid, every layer the same, no caps), refined
   by bisection where the cost crosses the target. It is the baseline, and the search starts
   from its best feasible point, so the result can only tie or beat it.
2. Steepest-ascent local search over one-layer moves ((tau_l, cap_l) to any grid value and
   cap) and two-layer exchanges (spend in one layer what another saves): every move is first
   screened on the path cache (no model run), the most promising few are evaluated exactly,
   and the best exact improvement is taken, until none is left. It runs twice: first on the
   ranking below, then from there on the band ranking (within the tolerance band below the
   ceiling first: where extra budget usually buys accuracy), and the best point evaluated
   anywhere, by the ranking below, wins.

With thresholds_only, moves change tau_l only and caps stay at H: every layer keeps choosing k per
input (caps set a static budget wherever they bind), at the price of a coarser cost staircase.

Points are ranked lexicographically: within the ceiling, then objective (accuracy, or agreement
with all heads), then lower cost, then agreement: among points of equal accuracy the cheapest
wins, inside the band or not.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bfexport.errors import BfexportError
from calibration.evaluate import Config

DEFAULT_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass(frozen=True)
class Point:
    """A configuration and what it achieves on the calibration data."""

    config: Config
    cost: float  # in the target's unit: FLOP ratio, or predicted ms at the target percentile
    flops_ratio: float
    objective: float  # accuracy when labelled, else agreement
    agreement: float  # with the all-heads model's predictions
    mean_heads: tuple[float, ...]
    exact: bool = True
    accuracy: float | None = None
    latency_ms: float | None = None  # predicted, latency targets only

    def to_json(self) -> dict[str, Any]:
        out = {**self.config.to_json(), "cost": self.cost, "flops_ratio": self.flops_ratio,
               "objective": self.objective, "agreement": self.agreement, "mean_heads": list(self.mean_heads)}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        if self.latency_ms is not None:
            out["predicted_latency_ms"] = self.latency_ms
        return out


Evaluate = Callable[[Sequence[Config], bool], list[Point]]


@dataclass(frozen=True)
class Goal:
    """The cost ceiling and the band below it the search aims for."""

    limit: float
    floor: float

    def feasible(self, p: Point) -> bool:
        return p.cost <= self.limit

    def key(self, p: Point) -> tuple[bool, float, float, float]:
        """The ranking of the result: the best objective under the ceiling, the cheapest among equals."""
        return (p.cost <= self.limit, p.objective, -p.cost, p.agreement)

    def band_key(self, p: Point) -> tuple[bool, bool, float, float, float]:
        """The ranking that climbs into the band: where the extra budget usually buys accuracy."""
        return (p.cost <= self.limit, p.cost >= self.floor, p.objective, -p.cost, p.agreement)


@dataclass
class SearchOutcome:
    best: Point
    start: Point
    baseline: Point | None  # best feasible single global threshold; None when none is feasible
    global_points: list[Point]
    tried: list[Point] = field(default_factory=list)  # every exactly evaluated point
    rounds: int = 0


def global_sweep(evaluate: Evaluate, goal: Goal, grid: Sequence[float], n_layers: int, n_heads: int,
                 refine_steps: int = 4) -> list[Point]:
    """Every layer at the same tau (no caps), on `grid`, plus bisection toward the ceiling."""
    points = evaluate([Config.uniform(t, n_heads, n_layers) for t in grid], True)
    tau: Callable[[Point], float] = lambda p: p.config.thresholds[0]  # noqa: E731
    lo = max((p for p in points if goal.feasible(p)), key=tau, default=None)
    hi = min((p for p in points if not goal.feasible(p) and (lo is None or tau(p) > tau(lo))), key=tau, default=None)
    for _ in range(refine_steps):
        if lo is None or hi is None or lo.cost >= goal.floor:
            break
        mid = round((tau(lo) + tau(hi)) / 2, 6)
        if mid in (tau(lo), tau(hi)):
            break
        p = evaluate([Config.uniform(mid, n_heads, n_layers)], True)[0]
        points.append(p)
        lo, hi = (p, hi) if goal.feasible(p) else (lo, p)
    return sorted(points, key=tau)


def neighbours(config: Config, grid: Sequence[float], n_heads: int,
               thresholds_only: bool = False) -> list[tuple[int, Config]]:
    """One-layer moves: (tau_l, cap_l) to any other grid value and cap (thresholds_only: tau_l alone)."""
    moves = []
    for layer in range(len(config.thresholds)):
        here = (config.thresholds[layer], config.caps[layer])
        caps = [config.caps[layer]] if thresholds_only else range(1, n_heads + 1)
        moves += [(layer, config.with_layer(layer, tau=t, cap=k)) for t in grid for k in caps if (t, k) != here]
    return moves


def _pair_pool(moves: list[tuple[tuple[int, Config], Point]], size: int) -> list[tuple[tuple[int, Config], Point]]:
    """The moves worth combining: the best by objective and the cheapest, `size` of each."""
    by_gain = sorted(moves, key=lambda m: (m[1].objective, m[1].agreement, -m[1].cost), reverse=True)[:size]
    by_cost = sorted(moves, key=lambda m: (m[1].cost, -m[1].objective))[:size]
    return list({id(m): m for m in (*by_gain, *by_cost)}.values())


Key = Callable[[Point], tuple[float, ...]]  # ranked lexicographically, higher is better


def local_search(evaluate: Evaluate, key: Key, start: Point, grid: Sequence[float], n_heads: int, *,
                 max_rounds: int = 10, shortlist: int = 8, slices: int = 3, pool: int = 48,
                 thresholds_only: bool = False,
                 log: Callable[[str], None] | None = None) -> tuple[Point, list[Point], int]:
    """Steepest ascent from `start` on `key`; returns (best, exact points tried, rounds)."""
    current, tried = start, {start.config: start}
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        moves = neighbours(current.config, grid, n_heads, thresholds_only)
        screened = evaluate([c for _, c in moves], False)
        exact_free = [p for p in screened if p.exact]
        tried.update({p.config: p for p in exact_free})
        estimates: dict[Config, tuple[float, ...]] = {}
        for (_, c), p in zip(moves, screened, strict=True):
            if not p.exact:
                estimates[c] = key(p)
        pairs = _pair_pool(list(zip(moves, screened, strict=True)), pool)
        for ((la, a), pa), ((lb, b), pb) in itertools.combinations(pairs, 2):
            if la == lb:
                continue
            combo = a.with_layer(lb, tau=b.thresholds[lb], cap=b.caps[lb])
            if combo in tried or combo in estimates:
                continue
            cost = pa.cost + pb.cost - current.cost
            est = Point(combo, cost, 0.0, pa.objective + pb.objective - current.objective,
                        pa.agreement + pb.agreement - current.agreement, (), exact=False)
            estimates[combo] = key(est)
        now = key(current)
        promising = sorted((c for c, k in estimates.items() if k > now), key=estimates.__getitem__, reverse=True)
        best = max(exact_free, key=key, default=None)
        for first in range(0, min(len(promising), slices * shortlist), shortlist):
            if best is not None and key(best) > now:
                break  # screening estimates are only estimates: look further down only while nothing improved
            exact = evaluate(promising[first:first + shortlist], True)
            tried.update({p.config: p for p in exact})
            best = max([p for p in (best, *exact) if p is not None], key=key)
        if best is None or key(best) <= now:
            break
        current = best
        if log:
            log(f"round {rounds}: cost {current.cost:.4f}, objective {current.objective:.4f}, "
                f"thresholds {list(current.config.thresholds)}, caps {list(current.config.caps)}")
    return current, list(tried.values()), rounds


def search(evaluate: Evaluate, goal: Goal, n_layers: int, n_heads: int, *, grid: Sequence[float] = DEFAULT_GRID,
           fallback_starts: Sequence[Point] = (), refine_steps: int = 4, max_rounds: int = 10, shortlist: int = 8,
           thresholds_only: bool = False, log: Callable[[str], None] | None = None) -> SearchOutcome:
    """Global sweep, then per-layer local search from the best feasible global point.

    fallback_starts (e.g. k = 1 everywhere) are used only when no global threshold is feasible
    (never with thresholds_only: they are set by caps).
    """
    global_points = global_sweep(evaluate, goal, grid, n_layers, n_heads, refine_steps)
    feasible = [p for p in global_points if goal.feasible(p)]
    baseline = max(feasible, key=goal.key, default=None)
    if log:
        log(f"global sweep: {len(global_points)} thresholds, best feasible "
            + (f"tau {baseline.config.thresholds[0]:g} (cost {baseline.cost:.4f}, objective {baseline.objective:.4f})"
               if baseline else "none"))
    if baseline is None and thresholds_only:
        cheapest = min(global_points, key=lambda p: p.cost)
        raise BfexportError(f"no threshold alone meets the target: the cheapest, tau {cheapest.config.thresholds[0]:g}"
                            f" in every layer, costs {cheapest.cost:.4g}; raise the target or let caps set budgets")
    start = baseline or max((p for p in fallback_starts if goal.feasible(p)), key=goal.key, default=None)
    if start is None:
        raise ValueError("search needs a feasible starting point")
    layer_grid = sorted(set(grid) | {p.config.thresholds[0] for p in global_points})
    # Phase 1 climbs the objective anywhere under the ceiling (a cheaper, better point is often
    # reachable only by leaving the band); phase 2 climbs into the band from there, and is kept
    # only where it finds more accuracy.
    climbed, tried_free, rounds_free = local_search(evaluate, goal.key, start, layer_grid, n_heads,
                                                    max_rounds=max_rounds, shortlist=shortlist,
                                                    thresholds_only=thresholds_only, log=log)
    _, tried_band, rounds_band = local_search(evaluate, goal.band_key, climbed, layer_grid, n_heads,
                                              max_rounds=max_rounds, shortlist=shortlist,
                                              thresholds_only=thresholds_only, log=log)
    tried = list({p.config: p for p in (*tried_free, *tried_band, *global_points, *fallback_starts)}.values())
    best = max((p for p in tried if p.exact), key=goal.key)
    return SearchOutcome(best, start, baseline, global_points, tried, rounds_free + rounds_band)
