"""A checkpoint's tokenizer.json is checked where it is loaded (convert embeds it): it parses, is
UTF-8, fits a size bound, and its ids fit the model's vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

import bfexport.data as data_module
from bfexport.checkpoint import save_checkpoint
from bfexport.data import train_tokenizer
from tests.factories import TEXTS, tiny_model


def tokenizer_bigger_than_the_model(tmp_path: Path) -> Path:
    small = tiny_model(vocab_size=20)
    return save_checkpoint(small, tmp_path / "small", tokenizer_json=train_tokenizer(TEXTS, 120).to_str())


@pytest.mark.parametrize("breakage, message", [
    (lambda ckpt: (ckpt / "tokenizer.json").write_text('{"not": "a tokenizer"}'), "not a valid tokenizer.json"),
    (lambda ckpt: (ckpt / "tokenizer.json").write_bytes(b"\xff\xfe" + (ckpt / "tokenizer.json").read_bytes()),
     "not UTF-8 (byte 1)"),
    (lambda ckpt: (ckpt / "tokenizer.json").unlink(), "tokenizer file not found"),
])
@pytest.mark.parametrize("command", ["convert", "inspect"])
def test_broken_tokenizer_is_refused(bfexport, checkpoint: Path, tmp_path: Path, breakage,
                                     message: str, command: str) -> None:
    breakage(checkpoint)
    out = tmp_path / "m.onnx"
    result = bfexport(command, checkpoint, *(["-o", out] if command == "convert" else []))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {checkpoint / 'tokenizer.json'}: ")
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("command", ["convert", "inspect", "deploy"])
def test_tokenizer_with_ids_past_vocab_size_is_refused(bfexport, tmp_path: Path, command: str) -> None:
    ckpt = tokenizer_bigger_than_the_model(tmp_path)
    out = tmp_path / ("m.onnx" if command == "convert" else "repo")
    options = {"convert": ["-o", out], "inspect": [], "deploy": ["--repo", out]}[command]
    result = bfexport(command, ckpt, *options)
    assert result.returncode == 2, result.stderr
    assert "the tokenizer has ids up to 119 but the model's vocab_size is 20" in result.stderr
    assert not out.exists()


def test_oversized_tokenizer_is_refused(bfexport, checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(data_module, "MAX_TOKENIZER_BYTES", 1000)
    out = tmp_path / "m.onnx"
    result = bfexport("convert", checkpoint, "-o", out)
    assert result.returncode == 2, result.stderr
    assert "larger than the 1,000 accepted for a tokenizer.json" in result.stderr
    assert not out.exists()


def test_embedded_tokenizer_is_checked_on_load(tmp_path: Path) -> None:
    with pytest.raises(data_module.BfexportError, match="vocab_size is 20"):
        data_module.tokenizer_from_str(train_tokenizer(TEXTS, 120).to_str(), "m.onnx", vocab_size=20)
