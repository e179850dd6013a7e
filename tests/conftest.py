"""Shared fixtures: a tiny BudgetFormer whose router really varies k, its tokenizer and checkpoint,
a labelled data file, and the CLI run in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfexport import data
from bfexport.checkpoint import save_checkpoint
from bfexport.cli import run
from bfexport.model import BudgetFormerForSequenceClassification
from tests.factories import LABELS, TEXTS, tiny_model


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


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    """TEXTS with the tiny model's labels in turn, as JSONL."""
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": LABELS[i % 4]}) + "\n" for i, t in enumerate(TEXTS)))
    return path


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def bfexport(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the CLI in-process (as the console script does) and capture what it prints."""
    def invoke(*args: object) -> Result:
        capsys.readouterr()
        code = run([str(a) for a in args])
        out = capsys.readouterr()
        return Result(code, out.out, out.err)
    return invoke


@pytest.fixture()
def onnx_file(bfexport: Callable[..., Result], checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint exported by `bfexport convert` (adaptive)."""
    path = tmp_path / "good.onnx"
    assert bfexport("convert", checkpoint, "-o", path).returncode == 0
    return path
