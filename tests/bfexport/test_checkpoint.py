"""Checkpoints load only what they claim to be, and never run code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bfexport.checkpoint import load_checkpoint, save_checkpoint
from bfexport.errors import BfexportError
from tests.factories import VARIANTS, tiny_model, variant_model


def test_round_trip_is_exact(checkpoint: Path, model) -> None:
    loaded = load_checkpoint(checkpoint)
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in checkpoint.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_missing_directory_and_files(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(BfexportError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "nope")
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(BfexportError, match="missing weights"):
        load_checkpoint(checkpoint)
    (checkpoint / "config.json").unlink()
    with pytest.raises(BfexportError, match="config.json: file not found"):
        load_checkpoint(checkpoint)


def test_truncated_weights(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BfexportError, match="not a readable safetensors file"):
        load_checkpoint(checkpoint)


def test_pickle_payload_is_never_unpickled(checkpoint: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (checkpoint / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(BfexportError):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_shape_contradicting_config(checkpoint: Path, model) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.weight"] = torch.zeros(7, model.config.d_model)
    save_file(state, str(checkpoint / "model.safetensors"))
    with pytest.raises(BfexportError, match=r"classifier.weight has shape \(7, 32\)"):
        load_checkpoint(checkpoint)


def test_missing_and_unexpected_keys(checkpoint: Path, model) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "ln_final.bias"}
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(checkpoint / "model.safetensors"))
    with pytest.raises(BfexportError, match="not the ones config.json implies: missing ln_final.bias; "
                                            "unexpected extra.weight$"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("variant", VARIANTS)
def test_architecture_checkpoint_round_trips(tmp_path: Path, variant: str) -> None:
    model = variant_model(variant)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    assert loaded.config == model.config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_weights_of_another_architecture_name_the_keys(tmp_path: Path) -> None:
    """A pre-LN model's weights under a BERT-shaped config.json: the keys the config implies are named."""
    checkpoint = save_checkpoint(tiny_model(), tmp_path / "ckpt")
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "norm": "post", "pooler": "tanh"}))
    with pytest.raises(BfexportError, match="missing ln_emb.bias, ln_emb.weight, pooler.bias, pooler.weight; "
                                            "unexpected ln_final.bias, ln_final.weight$"):
        load_checkpoint(checkpoint)


def test_nan_weights(checkpoint: Path, model) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["ln_final.weight"][0] = float("nan")
    save_file(state, str(checkpoint / "model.safetensors"))
    with pytest.raises(BfexportError, match="ln_final.weight contains NaN"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(n_experts=3), "unknown key"),
    (lambda c: c.update(vocab_size=10**12), "vocab_size"),
    (lambda c: c.update(n_heads="8"), "n_heads"),
])
def test_bad_config(checkpoint: Path, edit, message: str) -> None:
    path = checkpoint / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    with pytest.raises(BfexportError, match=message):
        load_checkpoint(checkpoint)


def test_config_that_is_not_json(checkpoint: Path) -> None:
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(BfexportError, match="not valid JSON"):
        load_checkpoint(checkpoint)


def test_failed_save_leaves_nothing(tmp_path: Path, model, monkeypatch) -> None:
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bfexport.checkpoint.save_file", explode)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []
