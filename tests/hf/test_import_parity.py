"""`bfexport import` is exact: a tiny random transformers classifier, saved with save_pretrained
with its fast tokenizer, imported, gives the transformers model's ids and logits (within 1e-5)
on real Debian texts at full budget, and every export flavor of the import validates."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.cli import run

transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) makes the reference models")
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer  # noqa: E402

DEBIAN = Path(__file__).resolve().parents[2] / "examples" / "debian-sections"
TEXTS = [e.text for e in data.read_examples(DEBIAN / "test.jsonl.gz", limit=24)] + ["", "   ", "GTK+ widgets"]
D, H, L, F, P = 32, 4, 2, 64, 40  # width, heads, layers, FFN width, position rows
LABELS = {0: "admin", 1: "libs", 2: "python"}


def wordpiece_tokenizer(out: Path, cls: Any) -> Any:
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(TEXTS, vocab_size=300, show_progress=False,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    trainer.save_model(str(out))
    return cls(vocab_file=str(out / "vocab.txt"), do_lower_case=True)


def bpe_tokenizer(out: Path) -> Any:
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(TEXTS, vocab_size=400, show_progress=False,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    trainer.save_model(str(out))
    return transformers.RobertaTokenizerFast(vocab_file=str(out / "vocab.json"), merges_file=str(out / "merges.txt"))


def bert_like(config_cls: Any, model_cls: Any, **extra: Any) -> Any:
    def make(vocab: int) -> Any:
        return model_cls(config_cls(vocab_size=vocab, hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                    intermediate_size=F, max_position_embeddings=P, id2label=LABELS, **extra))
    return make


def distilbert(vocab: int) -> Any:
    return transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=vocab, dim=D, n_layers=L, n_heads=H, hidden_dim=F, max_position_embeddings=P, id2label=LABELS))


T = transformers
ROBERTA_IDS = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, layer_norm_eps=1e-5)
CASES = {  # model_type: (model factory, tokenizer factory)
    "bert": (bert_like(T.BertConfig, T.BertForSequenceClassification),
             lambda out: wordpiece_tokenizer(out, T.BertTokenizerFast)),
    "distilbert": (distilbert, lambda out: wordpiece_tokenizer(out, T.DistilBertTokenizerFast)),
    "roberta": (bert_like(T.RobertaConfig, T.RobertaForSequenceClassification, **ROBERTA_IDS), bpe_tokenizer),
    # same layouts: a BPE / WordPiece vocabulary stands in for their own (SentencePiece) tokenizers
    "xlm-roberta": (bert_like(T.XLMRobertaConfig, T.XLMRobertaForSequenceClassification, **ROBERTA_IDS),
                    bpe_tokenizer),
    "camembert": (bert_like(T.CamembertConfig, T.CamembertForSequenceClassification, **ROBERTA_IDS), bpe_tokenizer),
    "electra": (bert_like(T.ElectraConfig, T.ElectraForSequenceClassification, embedding_size=D, hidden_act="gelu_new"),
                lambda out: wordpiece_tokenizer(out, T.ElectraTokenizerFast)),
}
FLAVORS_VALIDATED = ("bert", "distilbert", "roberta")  # each architecture option (post-LN, offset, poolers) once


def save_hf(tmp_path: Path, model_type: str, seed: int = 0) -> tuple[Path, Any, Any]:
    make_model, make_tokenizer = CASES[model_type]
    out = tmp_path / model_type
    out.mkdir()
    tokenizer = make_tokenizer(out)
    torch.manual_seed(seed)
    model = make_model(len(tokenizer)).eval()
    with torch.no_grad():  # biases and LayerNorms away from their 0 / 1 init, so a mapping slip shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    assert model.config.model_type == model_type
    return out, model, tokenizer


@pytest.mark.parametrize("model_type", list(CASES))
def test_import_gives_the_transformers_ids_and_logits(tmp_path: Path, model_type: str) -> None:
    hf_dir, hf_model, hf_tokenizer = save_hf(tmp_path, model_type)
    assert run(["import", str(hf_dir), "-o", str(tmp_path / "ckpt")]) == 0
    model = load_checkpoint(tmp_path / "ckpt")
    cfg = model.config
    assert cfg.labels == list(LABELS.values()) and cfg.adaptive
    tokenizer = data.tokenizer_from_str(load_tokenizer_json(tmp_path / "ckpt"), "ckpt", cfg.vocab_size)
    ids, mask = data.encode(tokenizer, TEXTS, cfg.max_length)
    ref = hf_tokenizer(TEXTS, truncation=True, max_length=cfg.max_length, padding=True, return_tensors="np")
    assert (mask == ref["attention_mask"]).all()
    assert (np.where(mask == 1, ids, -1) == np.where(mask == 1, ref["input_ids"], -1)).all()
    assert mask.sum(1).max() == cfg.max_length  # long texts were cut, keeping the final special token
    with torch.no_grad():
        expected = hf_model(input_ids=torch.from_numpy(ref["input_ids"]),
                            attention_mask=torch.from_numpy(ref["attention_mask"])).logits
    out = model.predict(torch.from_numpy(ids), torch.from_numpy(mask))
    assert (out.head_counts == H).all()  # the default budget runs every head
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", FLAVORS_VALIDATED)
def test_every_export_flavor_of_an_import_validates(tmp_path: Path, model_type: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    hf_dir, _, _ = save_hf(tmp_path, model_type, seed=1)
    ckpt = tmp_path / "ckpt"
    assert run(["import", str(hf_dir), "-o", str(ckpt)]) == 0
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS if t.strip()))
    flavors: list[list[str]] = [["adaptive"], ["masked"], ["dense"], ["static", "--head-sets", "0,1;2,3"]]
    if importlib.util.find_spec("onnxruntime_extensions") is not None:  # the test extra; its CPU stand-in
        flavors.append(["trt-plugin"])
    for flavor in flavors:
        onnx = tmp_path / f"{flavor[0]}.onnx"
        assert run(["convert", str(ckpt), "-o", str(onnx), "--flavor", *flavor]) == 0, capsys.readouterr().err
        assert run(["validate", str(ckpt), str(onnx), "--data", str(rows), "--json"]) == 0, capsys.readouterr()
        assert json.loads(capsys.readouterr().out)["passed"] is True


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_the_hf_directory_of_an_import_encodes_and_classifies_as_the_original(
        tmp_path: Path, model_type: str, capsys: pytest.CaptureFixture[str]) -> None:
    ort_models = pytest.importorskip("optimum.onnxruntime", reason="the hf extra (optimum) loads the directory")
    hf_dir, hf_model, hf_tokenizer = save_hf(tmp_path, model_type, seed=2)
    ckpt, hf_out = tmp_path / "ckpt", tmp_path / "hf-out"
    assert run(["import", str(hf_dir), "-o", str(ckpt)]) == 0
    assert run(["convert", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--hf-dir", str(hf_out)]) == 0, \
        capsys.readouterr().err
    tok = transformers.AutoTokenizer.from_pretrained(hf_out)
    max_length = load_checkpoint(ckpt).config.max_length
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="np")
    ref = hf_tokenizer(TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    np.testing.assert_array_equal(enc["input_ids"], ref["input_ids"])  # [CLS] ... [SEP], padding id included
    np.testing.assert_array_equal(enc["attention_mask"], ref["attention_mask"])
    model = ort_models.ORTModelForSequenceClassification.from_pretrained(hf_out)
    with torch.no_grad():
        expected = hf_model(input_ids=torch.from_numpy(ref["input_ids"]),
                            attention_mask=torch.from_numpy(ref["attention_mask"])).logits.numpy()
    np.testing.assert_allclose(model(**enc).logits, expected, atol=1e-4)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_a_triton_repository_of_an_imported_model_checks(model_type: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """deploy --check runs the tokenizer backend offline against bfexport.data.encode and the
    ensemble against the model: the backend adds [CLS] ... [SEP] (<s> ... </s>) and truncates as
    encode does; a RoBERTa tokenizer has no [UNK], which the backend needs only without a post-processor."""
    pytest.importorskip("tritonclient.grpc", reason="deploy needs tritonclient (the deploy extra)")
    hf_dir, _, _ = save_hf(tmp_path, model_type, seed=3)
    ckpt, repo = tmp_path / "ckpt", tmp_path / "repo"
    assert run(["import", str(hf_dir), "-o", str(ckpt)]) == 0
    assert run(["deploy", str(ckpt), "--repo", str(repo)]) == 0, capsys.readouterr().err
    assert run(["deploy", "--check", str(repo)]) == 0, capsys.readouterr().err
