"""FLOP ratio of a configuration's head counts, vectorised for the search.

Same numbers as bfexport.cost.flops_ratio (adaptive flavor, router included, over the dense
model without router): cost.layer_macs is tabulated once per sample and budget, so pricing a
candidate is a table lookup instead of a Python loop over samples and layers.
"""

from __future__ import annotations

import numpy as np

from bfexport import cost
from bfexport.model import BudgetFormerConfig


class FlopsModel:
    """Prices (N, L) head-count matrices for the samples whose lengths it was built with."""

    def __init__(self, config: BudgetFormerConfig, lengths: np.ndarray) -> None:
        self.config = config
        self.lengths = np.asarray(lengths, dtype=np.int64)
        H = config.n_heads
        unique, inverse = np.unique(self.lengths, return_inverse=True)
        per_len = np.array([[0] + [cost.layer_macs(config, int(n), k) for k in range(1, H + 1)] for n in unique],
                           dtype=np.float64)  # (U, H+1): MACs of one layer at budget k (column 0 unused)
        self._table = per_len[inverse]  # (N, H+1)
        trunk = np.array([cost.model_macs(config, int(n), [1] * config.n_layers) for n in unique], dtype=np.float64)
        trunk -= config.n_layers * per_len[:, 1]  # what model_macs adds outside the layers (pooling, classifier)
        self._outside = float(trunk[inverse].sum())
        self._dense = float(sum(cost.model_macs(config, int(n)) for n in self.lengths))

    def ratio(self, heads: np.ndarray) -> float:
        """Mean adaptive FLOPs at these head counts over mean dense FLOPs."""
        rows = np.arange(len(self.lengths))[:, None]
        spent = float(self._table[rows, heads].sum()) + self._outside
        return spent / self._dense

    def per_layer_ratio(self, heads: np.ndarray) -> list[float]:
        """Each layer's share of the dense model's cost, for the report."""
        rows = np.arange(len(self.lengths))[:, None]
        return [float(v) / self._dense for v in self._table[rows, heads].sum(0)]
