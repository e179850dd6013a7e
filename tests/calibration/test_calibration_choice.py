"""Which point calibrate chooses, and what it says about it: among equally accurate points the
cheapest wins (in the band or not), and a masked file's FLOPs ratio is said to be nominal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from calibration import FlopsTarget, calibrate
from calibration.evaluate import Config
from calibration.search import Goal, Point, search
from converters import MaskedExport, export_with_metadata, save_onnx
from tests.calibration.conftest import tiny_model

H, L = 4, 3


def plateau(configs: Sequence[Config], exact: bool) -> list[Point]:
    """Cost grows with the heads run; accuracy saturates at 0.8 from 3 heads per layer on, and
    agreement keeps growing: a costlier point agrees more but is no more accurate."""
    out = []
    for c in configs:
        k = [min(cap, 1 + round(t * (H - 1))) for t, cap in zip(c.thresholds, c.caps, strict=True)]
        cost = sum(k) / (H * L)
        objective = min(0.8, 0.5 + 0.1 * min(k))
        out.append(Point(c, cost, cost, objective, 0.5 + cost / 2, tuple(float(v) for v in k), True))
    return out


def test_among_equally_accurate_points_the_cheapest_wins() -> None:
    goal = Goal(0.92, 0.9)  # the band holds 11 of 12 heads (0.917), as accurate as 9 of 12
    outcome = search(plateau, goal, L, H, fallback_starts=plateau([Config.uniform(1.0, 1, L)], True))
    assert outcome.best.objective == 0.8
    assert outcome.best.cost == 0.75  # three heads in every layer
    assert any(p.objective == 0.8 and goal.floor <= p.cost <= goal.limit for p in outcome.tried)


@pytest.fixture(scope="module")
def masked_path(tmp_path_factory: pytest.TempPathFactory, tokenizer_json: str) -> Path:
    path = tmp_path_factory.mktemp("masked") / "masked.onnx"
    return save_onnx(export_with_metadata(tiny_model(0), MaskedExport(), tokenizer_json), path)


def test_masked_file_is_said_to_save_nothing(masked_path: Path, model_path: Path, data_path: Path) -> None:
    result = calibrate(masked_path, data_path, FlopsTarget(0.8), samples=48)
    assert [n for n in result.notes if "masked" in n and "saves no compute" in n and "nominal" in n]
    assert result.cost_unit == "flops_ratio"
    assert not [n for n in calibrate(model_path, data_path, FlopsTarget(0.8), samples=48).notes if "masked" in n]
