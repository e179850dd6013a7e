"""target_from_options: the one target a command asked for, with the targets' own defaults."""

from __future__ import annotations

import pytest

from bfexport.errors import BfexportError
from calibration.targets import FlopsTarget, LatencyTarget, target_from_options


def test_defaults_come_from_the_targets() -> None:
    assert target_from_options(flops=0.7) == FlopsTarget(0.7)
    assert target_from_options(latency_ms=3.0) == LatencyTarget(3.0)
    assert target_from_options(latency_fraction=0.8, percentile=90, tolerance=0.1) == \
        LatencyTarget(None, 90, 0.1, 0.8)


@pytest.mark.parametrize(("options", "message"), [
    ({}, "give exactly one of"),
    ({"flops": 0.7, "latency_ms": 3.0}, "give exactly one of"),
    ({"flops": 0.7, "percentile": 90}, "--percentile applies to latency targets only"),
    ({"latency_ms": 3.0, "tolerance": 1.5}, "must be below 1"),
])
def test_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(BfexportError, match=message):
        target_from_options(**options)
