"""Shared fixtures: a tiny BudgetFormer whose router really varies k, its tokenizer and checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bfexport import data
from bfexport.checkpoint import save_checkpoint
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification

TEXTS = [
    "a library for parsing json documents quickly",
    "game about space ships and lasers",
    "python bindings for the foo library",
    "documentation for the network tools",
    "x",
    "command line utility to convert images between many formats with options for scaling and cropping",
    "perl module providing an interface to sqlite databases",
    "rust crate for asynchronous io",
] * 3
LABELS = ["libs", "games", "python", "doc"]


def tiny_config(**overrides: object) -> BudgetFormerConfig:
    options = dict(vocab_size=120, max_length=32, d_model=32, n_heads=4, n_layers=3, d_ff=64, labels=LABELS,
                   dropout=0.0)
    options.update(overrides)
    return BudgetFormerConfig(**options)  # type: ignore[arg-type]


def tiny_model(seed: int = 0, **overrides: object) -> BudgetFormerForSequenceClassification:
    """Random weights; router weights scaled up so budgets and rankings vary across inputs."""
    torch.manual_seed(seed)
    model = BudgetFormerForSequenceClassification(tiny_config(**overrides))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "router" in name:
                p.normal_(0, 1.0)
    return model.eval()


@pytest.fixture(scope="session")
def tokenizer():
    return data.train_tokenizer(TEXTS, 120)


@pytest.fixture()
def model(tokenizer) -> BudgetFormerForSequenceClassification:
    return tiny_model(vocab_size=tokenizer.get_vocab_size())


@pytest.fixture()
def checkpoint(tmp_path: Path, model, tokenizer) -> Path:
    return save_checkpoint(model, tmp_path / "ckpt", tokenizer_json=tokenizer.to_str())


@pytest.fixture()
def texts() -> list[str]:
    return list(TEXTS)
