"""Choosing the fixed head sets of a static (pruned) export from data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tokenizers
import torch

from bfexport import data
from bfexport.model import BudgetFormerForSequenceClassification


def head_usage(model: BudgetFormerForSequenceClassification, tokenizer: tokenizers.Tokenizer,
               texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(n_layers, n_heads): how often each head ran over `texts` at the model's thresholds."""
    cfg = model.config
    usage = np.zeros((cfg.n_layers, cfg.n_heads))
    for start in range(0, len(texts), batch_size):
        ids, mask = data.encode(tokenizer, texts[start:start + batch_size], cfg.max_length)
        out = model.predict(torch.from_numpy(ids), torch.from_numpy(mask))
        for l, sel in enumerate(out.selections):
            np.add.at(usage[l], sel.heads[sel.active].numpy(), 1)
    return usage


def most_used_heads(usage: np.ndarray, n: int) -> list[list[int]]:
    """The n most used heads of each layer, ties to the lower index, listed in head order."""
    return [sorted(np.argsort(-row, kind="stable")[:n].tolist()) for row in usage]
