"""Choosing the fixed head sets of a static (pruned) export: given explicitly, or from data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers

from bfexport import data, summary
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.names import SELECTED_HEADS


def choose_static_heads(model: BudgetFormerForSequenceClassification, tokenizer_json: str, *,
                        heads: int | None = None, head_sets: str | None = None, data_path: str | Path | None = None,
                        samples: int | None = None) -> list[list[int]]:
    """The heads a static export keeps per layer: `head_sets` as written ('0,1;2,3;...'), or
    else the `heads` most used heads of each layer on the first `samples` rows of `data_path`,
    run at the model's thresholds with the tokenizer the export embeds (`tokenizer_json`)."""
    cfg = model.config
    if head_sets is not None:
        return parse_head_sets(head_sets, cfg.n_layers)
    if heads is None:
        raise BfexportError("--flavor static needs --heads N (with --data) or --head-sets")
    if not 1 <= heads <= cfg.n_heads:
        raise BfexportError(f"--heads must be in [1, {cfg.n_heads}], got {heads}")
    if data_path is None:
        raise BfexportError("--flavor static --heads N needs --data to find the most used heads")
    texts = [e.text for e in data.read_examples(data_path, limit=samples)]
    return most_used_heads(head_usage(model, data.tokenizer_from_str(tokenizer_json), texts), heads)


def parse_head_sets(text: str, n_layers: int) -> list[list[int]]:
    """'0,1,2;3,4;...' -> one head list per layer."""
    try:
        sets = [[int(h) for h in part.split(",") if h.strip()] for part in text.split(";")]
    except ValueError:
        raise BfexportError("--head-sets: expected comma-separated head indices per layer, separated by ';', "
                            f"got {text!r}") from None
    if len(sets) != n_layers:
        raise BfexportError(f"--head-sets: expected {n_layers} layers separated by ';', got {len(sets)}")
    return sets


def head_usage(model: BudgetFormerForSequenceClassification, tokenizer: tokenizers.Tokenizer,
               texts: Sequence[str]) -> np.ndarray:
    """(n_layers, n_heads): the share of `texts` on which each head ran, at the model's thresholds."""
    outputs = summary.run_data(summary.torch_runner(model), tokenizer, model.config, texts)
    return summary.head_usage(outputs[SELECTED_HEADS], model.config.n_heads)


def most_used_heads(usage: np.ndarray, n: int) -> list[list[int]]:
    """The n most used heads of each layer, ties to the lower index, listed in head order."""
    return [sorted(np.argsort(-row, kind="stable")[:n].tolist()) for row in usage]
