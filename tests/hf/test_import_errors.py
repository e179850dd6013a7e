"""`bfexport import` on bad input: one line, exit 2, nothing written, and a pickle payload never runs.
Also the pytorch_model.bin path (weights only) and a tokenizer rebuilt from vocab.txt."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.cli import run

pytest.importorskip("transformers", reason="the hf extra (transformers) makes the reference models")
from tests.hf.test_import_parity import TEXTS, save_hf  # noqa: E402


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hf_dir, _, _ = save_hf(tmp_path_factory.mktemp("hf"), "bert")
    return hf_dir


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "hf"
    shutil.copytree(src, dst)
    return dst


def refused(args: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_an_unsupported_architecture_names_what_is_supported(bert_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    edit_config(hf, model_type="gpt2", architectures=["GPT2ForSequenceClassification"])
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys, "model_type 'gpt2' is not supported",
            "BertForSequenceClassification (bert)", "DistilBertForSequenceClassification (distilbert)")
    edit_config(hf, model_type="bert", architectures=["BertForMaskedLM"])
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys, "is not BertForSequenceClassification")
    assert not (tmp_path / "out").exists()


def test_a_missing_weight_is_named(bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    state = load_file(str(hf / "model.safetensors"))
    del state["bert.encoder.layer.1.attention.self.key.weight"]
    save_file(state, str(hf / "model.safetensors"))
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys,
            "missing weight bert.encoder.layer.1.attention.self.key.weight")
    assert not (tmp_path / "out").exists()


def test_a_weight_of_another_shape_is_named(bert_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    edit_config(hf, intermediate_size=48)
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys,
            "bert.encoder.layer.0.intermediate.dense.weight has shape (64, 32), config.json implies (48, 32)")
    assert not (tmp_path / "out").exists()


def test_an_unexpected_weight_is_named(bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    state = load_file(str(hf / "model.safetensors"))
    save_file({**state, "cls.predictions.bias": torch.zeros(3)}, str(hf / "model.safetensors"))
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys, "unexpected weight cls.predictions.bias")


def test_a_tokenizer_beyond_the_vocabulary_is_refused(bert_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    tokenizer = json.loads((hf / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["zzzextra"] = 5000
    (hf / "tokenizer.json").write_text(json.dumps(tokenizer))
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys, "ids up to 5000", "vocab_size is")
    assert not (tmp_path / "out").exists()


def test_a_padding_token_other_than_pad_token_id_is_refused(bert_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    edit_config(hf, pad_token_id=3)
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys, "the padding token '[PAD]' has id 0",
            "pad_token_id is 3")


class Payload:
    """Unpickling this runs os.system: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_with_a_payload_is_refused_and_never_runs(bert_dir: Path, tmp_path: Path, zip_format: bool,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    hf = copy(bert_dir, tmp_path)
    (hf / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    bad = {"bert.embeddings.word_embeddings.weight": Payload(marker)}
    if zip_format:
        torch.save(bad, hf / "pytorch_model.bin")
    else:
        (hf / "pytorch_model.bin").write_bytes(pickle.dumps(bad))
    refused(["import", str(hf), "-o", str(tmp_path / "out")], capsys, "pytorch_model.bin: refused")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    if zip_format:  # the payload is live: an unsafe load runs it
        torch.load(hf / "pytorch_model.bin", weights_only=False)
    else:
        pickle.loads((hf / "pytorch_model.bin").read_bytes())
    assert marker.exists()


def test_pytorch_model_bin_with_plain_weights_imports_the_same_model(bert_dir: Path, tmp_path: Path) -> None:
    hf = copy(bert_dir, tmp_path)
    torch.save(load_file(str(hf / "model.safetensors")), hf / "pytorch_model.bin")
    (hf / "model.safetensors").unlink()
    assert run(["import", str(hf), "-o", str(tmp_path / "bin")]) == 0
    assert run(["import", str(bert_dir), "-o", str(tmp_path / "st")]) == 0
    a, b = load_checkpoint(tmp_path / "bin").state_dict(), load_checkpoint(tmp_path / "st").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_without_tokenizer_json_the_tokenizer_is_rebuilt_from_vocab_txt(bert_dir: Path, tmp_path: Path) -> None:
    hf = copy(bert_dir, tmp_path)
    (hf / "tokenizer.json").unlink()
    assert run(["import", str(hf), "-o", str(tmp_path / "rebuilt")]) == 0
    assert run(["import", str(bert_dir), "-o", str(tmp_path / "given")]) == 0
    rebuilt, given = (data.tokenizer_from_str(load_tokenizer_json(tmp_path / n)) for n in ("rebuilt", "given"))
    assert data.token_ids(rebuilt, TEXTS, 40) == data.token_ids(given, TEXTS, 40)


def test_an_existing_output_needs_force(bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ckpt"
    assert run(["import", str(bert_dir), "-o", str(out)]) == 0
    capsys.readouterr()
    refused(["import", str(bert_dir), "-o", str(out)], capsys, "--force")
    assert run(["import", str(bert_dir), "-o", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_heads"] == 4
    assert json.loads((out / "import.json").read_text())["model_type"] == "bert"
