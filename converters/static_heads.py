"""Choosing the fixed head sets of a static (pruned) export from data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tokenizers

from bfexport import summary
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.names import SELECTED_HEADS


def head_usage(model: BudgetFormerForSequenceClassification, tokenizer: tokenizers.Tokenizer,
               texts: Sequence[str]) -> np.ndarray:
    """(n_layers, n_heads): the share of `texts` on which each head ran, at the model's thresholds."""
    outputs = summary.run_data(summary.torch_runner(model), tokenizer, model.config, texts)
    return summary.head_usage(outputs[SELECTED_HEADS], model.config.n_heads)


def most_used_heads(usage: np.ndarray, n: int) -> list[list[int]]:
    """The n most used heads of each layer, ties to the lower index, listed in head order."""
    return [sorted(np.argsort(-row, kind="stable")[:n].tolist()) for row in usage]
