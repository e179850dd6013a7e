"""Fixtures the Triton tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from bfexport.checkpoint import save_checkpoint
from converters.triton import DeployOptions, deploy
from tests.factories import tiny_model


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """One repository (model "m", batching, with the tokenizer and ensemble) deployed from a tiny
    checkpoint (beside it, as ckpt/), for the tests that only read it."""
    work = tmp_path_factory.mktemp("tiny-deploy")
    ckpt = save_checkpoint(tiny_model(vocab_size=tokenizer.get_vocab_size()), work / "ckpt",
                           tokenizer_json=tokenizer.to_str())
    deploy(ckpt, work / "models", DeployOptions(name="m"))
    return work / "models"
