"""The Hugging Face directory: its files, atomicity, and (with the hf extra) Optimum + pipeline parity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from click.testing import CliRunner

import converters
import converters.hf as hf
from bfexport import data
from bfexport.checkpoint import save_checkpoint
from bfexport.cli import cli
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.runtime import OnnxClassifier
from tests.factories import LABELS, tiny_model

TRAIN_TEXTS = [
    "a library for parsing json documents quickly",
    "game about space ships and lasers",
    "python bindings for the foo library",
    "documentation for the network tools",
    "rust crate for asynchronous io",
    "perl module providing an interface to sqlite databases",
] * 3
# Upper case, accents, punctuation, unknown words, one text longer than max_length (32 tokens).
TEXTS = [
    "A Library for PARSING json documents",
    "Gäme about spâce ships, and lasers!",
    "python",
    "zzz qqq unknown words",
    " ".join(["documentation for the network tools"] * 12),
]


@pytest.fixture(scope="module")
def tokenizer() -> tokenizers.Tokenizer:
    return data.train_tokenizer(TRAIN_TEXTS, 200)


@pytest.fixture(scope="module")
def model(tokenizer) -> BudgetFormerForSequenceClassification:
    return tiny_model(vocab_size=tokenizer.get_vocab_size(), n_layers=2)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory, model, tokenizer) -> Path:
    proto = converters.export_with_metadata(model, converters.AdaptiveExport(), tokenizer.to_str())
    return converters.save_onnx(proto, tmp_path_factory.mktemp("export") / "model.onnx")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, onnx_path: Path) -> Path:
    return hf.write_hf_directory(onnx_path, tmp_path_factory.mktemp("hf") / "model")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- without the extra -------------------------------------------------------------------------

def test_directory_holds_the_same_model_and_a_bert_config(hf_dir: Path, onnx_path: Path, model) -> None:
    assert sorted(p.name for p in hf_dir.iterdir()) == sorted(hf.FILES)
    assert (hf_dir / "model.onnx").read_bytes() == onnx_path.read_bytes()
    cfg = read_json(hf_dir / "config.json")
    ours = model.config
    assert cfg["model_type"] == "bert"
    assert cfg["num_labels"] == len(LABELS)
    assert cfg["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert cfg["label2id"] == {label: i for i, label in enumerate(LABELS)}
    assert cfg["problem_type"] == "single_label_classification"
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"],
            cfg["intermediate_size"], cfg["max_position_embeddings"], cfg["pad_token_id"]) == (
        ours.vocab_size, ours.d_model, ours.n_heads, ours.n_layers, ours.d_ff, ours.max_length, 0)
    assert "architectures" not in cfg and "auto_map" not in cfg  # nothing that needs remote code
    assert BudgetFormerConfig.from_dict(cfg["bfexport"]) == ours
    assert cfg["bfexport_flavor"] == "adaptive" and cfg["bfexport_static_heads"] is None


def test_tokenizer_files_add_nothing_around_the_text(hf_dir: Path, tokenizer) -> None:
    tok_cfg = read_json(hf_dir / "tokenizer_config.json")
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tok_cfg["model_input_names"] == ["input_ids", "attention_mask"]
    assert tok_cfg["model_max_length"] == 32
    assert (tok_cfg["padding_side"], tok_cfg["truncation_side"]) == ("right", "right")
    assert read_json(hf_dir / "special_tokens_map.json") == {"pad_token": "[PAD]", "unk_token": "[UNK]"}
    spec = read_json(hf_dir / "tokenizer.json")
    assert spec["post_processor"] is None and spec["padding"] is None and spec["truncation"] is None
    written = tokenizers.Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    assert written.token_to_id("[PAD]") == 0
    for text in TEXTS:  # add_special_tokens=True (transformers' default) still adds nothing
        assert written.encode(text).ids == tokenizer.encode(text, add_special_tokens=False).ids


def test_accepts_an_exported_model_even_one_never_saved(onnx_path: Path, tmp_path: Path) -> None:
    exported = converters.load_exported(onnx_path)
    assert hf.write_hf_directory(exported, tmp_path / "a") == tmp_path / "a"
    exported.path = tmp_path / "gone.onnx"
    hf.write_hf_directory(exported, tmp_path / "b")
    assert (tmp_path / "b" / "model.onnx").read_bytes() == onnx_path.read_bytes()


def test_failure_leaves_nothing_and_keeps_the_old_directory(onnx_path: Path, tmp_path: Path, monkeypatch) -> None:
    real = hf._write_json

    def failing(path: Path, obj) -> None:
        if path.name == "special_tokens_map.json":  # the last file: everything else is written by now
            raise OSError("disk full")
        real(path, obj)

    monkeypatch.setattr(hf, "_write_json", failing)
    with pytest.raises(BfexportError, match="new: could not write \\(disk full\\)"):
        hf.write_hf_directory(onnx_path, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(hf, "_write_json", real)
    old = hf.write_hf_directory(onnx_path, tmp_path / "old")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    (old / "config.json").write_text(json.dumps({**read_json(old / "config.json"), "marker": 1}))
    before["config.json"] = (old / "config.json").read_bytes()
    monkeypatch.setattr(hf, "_write_json", failing)
    with pytest.raises(BfexportError, match="could not write"):
        hf.write_hf_directory(onnx_path, old)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]

    monkeypatch.setattr(hf, "_write_json", real)
    hf.write_hf_directory(onnx_path, old)  # ours: replaced
    assert "marker" not in read_json(old / "config.json")


def test_refuses_to_replace_a_directory_it_did_not_write(onnx_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(BfexportError, match="not a directory written by bfexport"):
        hf.write_hf_directory(onnx_path, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    hf.write_hf_directory(onnx_path, tmp_path / "empty")
    assert (tmp_path / "empty" / "model.onnx").is_file()


def test_needs_an_embedded_tokenizer(model, tmp_path: Path) -> None:
    path = converters.save_onnx(converters.export_with_metadata(model, converters.DenseExport()), tmp_path / "m.onnx")
    with pytest.raises(BfexportError, match="no tokenizer"):
        hf.write_hf_directory(path, tmp_path / "hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_cli_writes_the_directory(model, tokenizer, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(model, tmp_path / "ckpt", tokenizer_json=tokenizer.to_str())
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(cli, ["convert", str(checkpoint), "-o", str(out), "--hf-dir", str(tmp_path / "hf"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hf" / "model.onnx").read_bytes() == out.read_bytes()
    assert read_json(tmp_path / "hf" / "config.json")["bfexport"] == model.config.to_dict()


def test_writing_imports_neither_transformers_nor_optimum() -> None:
    code = ("import sys, converters.hf, bfexport.cli.convert; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'optimum')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- with the hf extra ------------------------------------------------------------------------

def test_optimum_and_pipeline_match_onnx_classifier(hf_dir: Path, onnx_path: Path) -> None:
    ort_models = pytest.importorskip("optimum.onnxruntime")
    transformers = pytest.importorskip("transformers")

    config = transformers.AutoConfig.from_pretrained(hf_dir)
    assert config.model_type == "bert" and config.id2label == dict(enumerate(LABELS))
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert tok.is_fast and tok.pad_token_id == 0 and tok.model_max_length == 32
    model = ort_models.ORTModelForSequenceClassification.from_pretrained(hf_dir)
    assert set(model.input_names) == {"input_ids", "attention_mask"}

    clf = OnnxClassifier(onnx_path)
    ids, mask = data.encode(clf.tokenizer, TEXTS, clf.config.max_length)
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="np")
    assert set(enc) == {"input_ids", "attention_mask"}  # no token_type_ids
    np.testing.assert_array_equal(enc["input_ids"], ids)  # no [CLS] / [SEP], same truncation
    np.testing.assert_array_equal(enc["attention_mask"], mask)

    reference = clf.run(ids, mask)["logits"]
    np.testing.assert_allclose(model(**enc).logits, reference, atol=1e-5)
    torch_enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    np.testing.assert_allclose(model(**torch_enc).logits.numpy(), reference, atol=1e-5)

    classify = transformers.pipeline("text-classification", model=model, tokenizer=tok)
    results = classify(TEXTS, truncation=True)
    expected = clf.classify(TEXTS)
    assert [r["label"] for r in results] == [p.label for p in expected]
    np.testing.assert_allclose([r["score"] for r in results], [p.score for p in expected], atol=1e-5)
