"""Tiny BudgetFormers for the tests: one config factory, one model factory, their texts, and the
architecture variants (BERT, DistilBERT, RoBERTa layouts) with a model factory for them.

Each suite keeps the seed, shapes and initialisation it was written against (passed as
arguments), so a shared default never shifts another suite's numbers.
"""

from __future__ import annotations

from typing import Literal

import torch

from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification

LABELS = ["libs", "games", "python", "doc"]
TEXTS = [
    "a library for parsing json documents quickly",
    "game about space ships and lasers",
    "python bindings for the foo library",
    "documentation for the network tools",
    "x",
    "command line utility to convert images between many formats with options for scaling and cropping",
    "perl module providing an interface to sqlite databases",
    "rust crate for asynchronous io",
] * 3  # the shared tokenizer's training texts and the CLI tests' data

Init = Literal["plain", "router", "strong"]


def tiny_config(**overrides: object) -> BudgetFormerConfig:
    """3 layers of 4 heads, d_model 32, 32 tokens, 4 labels, no dropout; overrides replace any field."""
    options: dict[str, object] = dict(vocab_size=120, max_length=32, d_model=32, n_heads=4, n_layers=3, d_ff=64,
                                      labels=LABELS, dropout=0.0)
    options.update(overrides)
    return BudgetFormerConfig(**options)  # type: ignore[arg-type]


def tiny_model(seed: int = 0, *, init: Init = "router", **overrides: object) -> BudgetFormerForSequenceClassification:
    """An eval-mode model with random weights drawn after torch.manual_seed(seed).

    init: "plain" keeps the model's own initialisation; "router" redraws the router weights
    with std 1 so that budgets and rankings vary across inputs; "strong" also makes attention,
    embeddings and classifier strong enough that the heads run change predictions (calibration).
    """
    torch.manual_seed(seed)
    model = BudgetFormerForSequenceClassification(tiny_config(**overrides))
    with torch.no_grad():
        if init == "router":
            for name, p in model.named_parameters():
                if "router" in name:
                    p.normal_(0, 1.0)
        elif init == "strong":
            for block in model.blocks:
                torch.nn.init.normal_(block.attn.qkv_weight, std=0.5)
                torch.nn.init.normal_(block.attn.out_weight, std=0.5)
                torch.nn.init.normal_(block.attn.router.proj.weight, std=1.0)
                torch.nn.init.normal_(block.attn.router.proj.bias, std=1.0)
            torch.nn.init.normal_(model.tok_emb.weight, std=1.0)
            torch.nn.init.normal_(model.classifier.weight, std=1.0)
    return model.eval()


# The architecture combinations that matter: each BERT-family layout bfexport imports, and bfexport's
# own pre-LN model with the other options.
VARIANTS: dict[str, dict[str, object]] = {
    "bert": dict(norm="post", layer_norm_eps=1e-12, activation="gelu_tanh", type_vocab_size=2, pooling="first",
                 pooler="tanh"),
    "distilbert": dict(norm="post", layer_norm_eps=1e-12, pooling="first", pooler="relu"),
    "roberta": dict(norm="post", position_offset=2, type_vocab_size=1, pooling="first", pooler="tanh"),
    "pre-relu-first": dict(activation="relu", pooling="first"),
}


def variant_model(variant: str, seed: int = 0, **overrides: object) -> BudgetFormerForSequenceClassification:
    """tiny_model (init "router") with architecture VARIANTS[variant]; biases and LayerNorm weights are
    drawn at random too (not 0 and 1), so a weight read in the wrong place changes the logits."""
    model = tiny_model(seed, init="router", **{**VARIANTS[variant], **overrides})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "router" in name:
                continue
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            elif "ln_" in name:
                p.normal_(1.0, 0.1)
    return model
