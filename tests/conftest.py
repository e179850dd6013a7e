"""Shared fixtures: a tiny BudgetFormer whose router really varies k, its tokenizer and checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from bfexport import data
from bfexport.checkpoint import save_checkpoint
from bfexport.model import BudgetFormerForSequenceClassification
from tests.factories import LABELS, tiny_config, tiny_model

__all__ = ["LABELS", "TEXTS", "tiny_config", "tiny_model"]  # test modules import these from here too

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
