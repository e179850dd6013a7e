"""Starting training from existing weights (`bfexport train --init`): the routers that make a
model run every head at its default budget, and the learning-rate groups that keep the
pretrained weights apart from the routers that still have to learn.

A router whose projection is zero decides the same for every input: its relevance ties (all
heads rank equally; with k = H every head runs anyway) and its budget is set by the bias
alone. A bias that puts FULL_BUDGET_PROB on k = H selects all H heads for every threshold
above 1 - FULL_BUDGET_PROB (the default 0.5 included: CDF(H - 1) = 1 - FULL_BUDGET_PROB), while
leaving the softmax far from saturation, so the budget head still receives gradients when
training starts (a calibrated threshold below 0.1 already runs fewer heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from bfexport.checkpoint import WEIGHTS, load_checkpoint, load_tokenizer_json
from bfexport.errors import BfexportError
from bfexport.files import file_sha256
from bfexport.model import BudgetFormerForSequenceClassification, Router

FULL_BUDGET_PROB = 0.9
"""P(k = H) of an opened router: every head runs at any threshold above 1 - this value."""


def open_routers(model: BudgetFormerForSequenceClassification) -> None:
    """Reset every layer's router so the model at its default budget runs all heads (it is then
    the same function as the model without routers)."""
    H = model.config.n_heads
    budget_bias = torch.zeros(2 * H)
    if H > 1:  # softmax(bias)[H-1] = FULL_BUDGET_PROB, the other k share the rest equally
        budget_bias[H - 1] = math.log(FULL_BUDGET_PROB * (H - 1) / (1 - FULL_BUDGET_PROB))
    with torch.no_grad():
        for router in (m for m in model.modules() if isinstance(m, Router)):
            router.proj.weight.zero_()
            router.proj.bias.copy_(budget_bias)


@dataclass(frozen=True)
class WarmStart:
    """A model to train from, its tokenizer, and what the recipe records about where it came from."""

    model: BudgetFormerForSequenceClassification
    tokenizer_json: str
    path: str
    weights_sha256: str
    routers_opened: bool  # the checkpoint's routers were untrained (a dense checkpoint) and were reset


def load_warm_start(directory: str | Path, labels: list[str]) -> WarmStart:
    """The checkpoint at `directory` in train mode, ready to be budgetized on data with `labels`.

    A dense checkpoint (trained with every head on) never trained its routers: they are opened
    (open_routers) so training starts from the dense model itself. The data's labels must be
    among the checkpoint's: its classifier's rows are its labels, in its order.
    """
    model = load_checkpoint(directory)
    tokenizer_json = load_tokenizer_json(directory)
    unknown = sorted(set(labels) - set(model.config.labels))
    if unknown:
        known = ", ".join(model.config.labels[:5]) + (", ..." if model.config.n_labels > 5 else "")
        raise BfexportError(f"{directory}: the training data has labels this checkpoint does not classify "
                            f"({', '.join(unknown[:5])}); its labels: {known}")
    dense = not model.config.adaptive
    if dense:
        open_routers(model)
        model.config.adaptive = True
    return WarmStart(model.train(), tokenizer_json, str(directory), file_sha256(Path(directory) / WEIGHTS), dense)


def is_router(name: str) -> bool:
    """Parameters of a router (new weights to learn); everything else was trained before."""
    return ".router." in name


def parameter_groups(model: BudgetFormerForSequenceClassification, weight_decay: float,
                     *, encoder_lr_scale: float = 1.0) -> list[dict[str, object]]:
    """AdamW groups: routers at the base learning rate, the other weights at encoder_lr_scale
    times it (1.0 when training from scratch); matrices decay, embeddings, biases and norms do not.
    Each group carries `lr_scale` and `router` so the schedule can treat them apart."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        decays = p.dim() >= 2 and "emb" not in name
        groups.setdefault((is_router(name), decays), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0, "router": router,
             "lr_scale": 1.0 if router else encoder_lr_scale}
            for (router, decays), params in sorted(groups.items())]
