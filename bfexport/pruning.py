"""Static head pruning: which fixed heads to keep per layer, the baselines per-input budgets must beat.

Head importance follows Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): put a
mask xi_h = 1 on every head and take I_h = E_x |dL(x)/dxi_h|, the expected sensitivity of the loss
to removing head h, normalised per layer (L2) as the paper does. The model's training gate hook
carries the mask, so this runs the same gated forward as training, with every head on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bfexport import data
from bfexport.model import BudgetFormerForSequenceClassification, Selection
from bfexport.train import length_batches, tensors, token_lengths


def head_importance(model: BudgetFormerForSequenceClassification, tokenizer: Any, examples: list[data.Example],
                    batch_size: int = 32) -> np.ndarray:
    """(n_layers, H) importance of every head on labelled examples, each layer L2-normalised."""
    cfg = model.config
    device = next(model.parameters()).device
    total = torch.zeros(cfg.n_layers, cfg.n_heads, device=device)
    masks: list[torch.Tensor] = []

    def mask_gate(layer: int, budget_logits: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, Selection]:
        xi = torch.ones_like(relevance, requires_grad=True)  # (B, H), one mask per example
        masks.append(xi)
        return xi, Selection.fixed(list(range(cfg.n_heads)), relevance.shape[0], relevance.device)

    was_training = model.training
    model.eval()  # no dropout: the sensitivity of the model that will be pruned
    try:
        for batch in length_batches(examples, token_lengths(tokenizer, examples), batch_size):
            ids, mask, y = tensors(tokenizer, batch, cfg.labels, cfg.max_length, device)
            masks.clear()
            out = model(ids, mask, gate_fn=mask_gate)
            loss = torch.nn.functional.cross_entropy(out.logits, y, reduction="sum")
            grads = torch.autograd.grad(loss, masks)
            total += torch.stack([g.abs().sum(0) for g in grads])  # (L, H): per-example |dL/dxi| summed
    finally:
        model.train(was_training)
    importance = (total / len(examples)).cpu().numpy()
    normalised: np.ndarray = importance / np.maximum(np.linalg.norm(importance, axis=1, keepdims=True), 1e-12)
    return normalised


def top_heads(scores: np.ndarray, k: int | list[int]) -> list[list[int]]:
    """Per layer, the k heads (k per layer, for a list) with the highest score (ties to the lower index),
    in index order."""
    ks = [k] * len(scores) if isinstance(k, int) else k
    order = np.argsort(-scores, axis=1, kind="stable")
    return [sorted(int(h) for h in row[:n]) for row, n in zip(order, ks, strict=True)]

