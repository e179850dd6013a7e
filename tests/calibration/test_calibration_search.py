"""The search on a synthetic problem (no model): ceiling honoured, baseline tied or beaten;
and target validation."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bfexport.errors import BfexportError
from calibration.evaluate import Config
from calibration.search import DEFAULT_GRID, Goal, Point, search
from calibration.targets import FlopsTarget, LatencyTarget, target_from_json

H = 4
VALUE = (1.0, 0.2, 0.6)  # layer 0 is worth spending on, layer 1 is not


def heads(c: Config) -> list[float]:
    return [min(c.caps[layer], 1 + t * (H - 1)) for layer, t in enumerate(c.thresholds)]


def evaluate(configs: Sequence[Config], exact: bool) -> list[Point]:
    out = []
    for c in configs:
        k = heads(c)
        cost = 0.4 + 0.2 * sum(k) / (H * len(k)) * 3
        objective = sum(v * (1 - 0.5 ** kk) for v, kk in zip(VALUE, k, strict=True)) / sum(VALUE)
        out.append(Point(c, cost, cost, objective, objective, tuple(k), True))
    return out


@pytest.mark.parametrize("limit", [0.6, 0.75, 0.9])
def test_search_respects_ceiling_and_beats_global(limit: float) -> None:
    goal = Goal(limit, limit - 0.02)
    cheapest = evaluate([Config.uniform(1.0, 1, 3)], True)[0]
    outcome = search(evaluate, goal, 3, H, fallback_starts=[cheapest])
    assert outcome.best.cost <= limit
    assert outcome.baseline is not None
    assert outcome.best.objective >= outcome.baseline.objective
    assert goal.key(outcome.best) >= goal.key(outcome.start)
    assert all(p.exact for p in outcome.tried)


def test_search_prefers_the_valuable_layer() -> None:
    outcome = search(evaluate, Goal(0.75, 0.73), 3, H)
    k = outcome.best.mean_heads
    assert k[0] >= k[1]
    assert outcome.best.objective > outcome.baseline.objective


def test_grid_is_sorted_probabilities() -> None:
    assert list(DEFAULT_GRID) == sorted(DEFAULT_GRID) and DEFAULT_GRID[-1] == 1.0 and DEFAULT_GRID[0] > 0


@pytest.mark.parametrize("make", [lambda: FlopsTarget(0), lambda: FlopsTarget(float("nan")),
                                  lambda: LatencyTarget(-1), lambda: LatencyTarget(5, percentile=42),
                                  lambda: FlopsTarget(0.5, tolerance=-0.1), lambda: LatencyTarget(5, tolerance=1.5),
                                  lambda: LatencyTarget(), lambda: LatencyTarget(fraction=-1)])
def test_bad_targets(make) -> None:
    with pytest.raises(BfexportError):
        make()


def test_targets_round_trip() -> None:
    for t in (FlopsTarget(0.6), LatencyTarget(3.5, 90, 0.1), LatencyTarget(fraction=0.8)):
        assert target_from_json(t.to_json()) == t


@pytest.mark.parametrize("limit", [0.6, 0.75])
def test_thresholds_only_search_never_sets_a_cap(limit: float) -> None:
    outcome = search(evaluate, Goal(limit, limit - 0.02), 3, H, thresholds_only=True)
    assert outcome.best.cost <= limit
    assert all(c == H for p in outcome.tried for c in p.config.caps)
    assert outcome.baseline is not None and outcome.best.objective >= outcome.baseline.objective


def test_thresholds_only_refuses_a_target_only_caps_reach() -> None:
    # tau 0.05 everywhere is the cheapest threshold-only point (cost 0.57); 0.45 needs caps
    with pytest.raises(BfexportError, match="no threshold alone meets the target"):
        search(evaluate, Goal(0.45, 0.43), 3, H, thresholds_only=True)


@pytest.mark.parametrize("limit", [0.6, 0.75, 0.9])
def test_the_chosen_point_is_never_dominated(limit: float) -> None:
    """A ceiling, not a budget to spend: no point tried that also meets it is cheaper and as accurate."""
    cheapest = evaluate([Config.uniform(1.0, 1, 3)], True)[0]
    outcome = search(evaluate, Goal(limit, limit - 0.02), 3, H, fallback_starts=[cheapest])
    best = outcome.best
    assert not any(p.cost <= limit and p.cost < best.cost and p.objective >= best.objective for p in outcome.tried)
