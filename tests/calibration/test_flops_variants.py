"""The calibration search prices head counts as bfexport.cost does, for every architecture variant
(pooling and pooler change what lies outside the layers)."""

from __future__ import annotations

import numpy as np
import pytest

from bfexport import cost
from calibration.flops import FlopsModel
from tests.factories import VARIANTS, tiny_config


@pytest.mark.parametrize("variant", VARIANTS)
def test_calibration_prices_every_variant_as_the_cost_model(variant: str) -> None:
    cfg = tiny_config(**VARIANTS[variant])
    lengths = np.array([3, 17, 32, 17])
    heads = np.array([[1, 2, 4], [4, 4, 4], [2, 1, 3], [1, 1, 1]])
    flops = FlopsModel(cfg, lengths)
    assert flops.ratio(heads) == pytest.approx(cost.flops_ratio(cfg, lengths, heads), rel=1e-12)
    assert flops.ratio(np.full_like(heads, 4)) > 1.0 > flops.ratio(heads)  # the router costs; skipping saves
