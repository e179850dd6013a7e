"""Weights are checked against the config from the safetensors header before any memory is spent,
and for finiteness in the dtype the model computes in."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import bfexport.checkpoint as checkpoint_module
from bfexport.checkpoint import load_checkpoint
from bfexport.errors import BfexportError


def save_state(checkpoint: Path, model, dtype: torch.dtype, edit=None) -> None:
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if edit:
        edit(state)
    save_file(state, str(checkpoint / "model.safetensors"))


def test_float64_weight_that_overflows_float32_is_refused(checkpoint: Path, model) -> None:
    def overflow(state: dict[str, torch.Tensor]) -> None:
        state["classifier.weight"] = state["classifier.weight"].double()
        state["classifier.weight"][0, 0] = 1e300  # finite in float64, inf in float32

    save_state(checkpoint, model, torch.float32, overflow)
    with pytest.raises(BfexportError, match=r"classifier.weight is stored as F64; accepted: F32, F16, BF16"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_widen_exactly(checkpoint: Path, model, dtype: torch.dtype) -> None:
    save_state(checkpoint, model, dtype)
    loaded = load_checkpoint(checkpoint)
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, model.state_dict()[key].to(dtype).float())


def test_overflow_after_widening_is_caught(checkpoint: Path, model) -> None:
    save_state(checkpoint, model, torch.float16, lambda s: s["pos_emb.weight"].__setitem__((1, 1), float("inf")))
    with pytest.raises(BfexportError, match="pos_emb.weight contains NaN or infinite values"):
        load_checkpoint(checkpoint)


def test_loaded_model_owns_real_trainable_weights(checkpoint: Path, model) -> None:
    loaded = load_checkpoint(checkpoint)
    assert all(p.device.type == "cpu" and p.requires_grad for p in loaded.parameters())
    ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(loaded.predict(ids, torch.ones_like(ids)).logits,
                       model.predict(ids, torch.ones_like(ids)).logits)


def test_huge_config_with_a_16_byte_weights_file_builds_nothing(checkpoint: Path, monkeypatch) -> None:
    """200 M parameters claimed, 16 bytes present: refused from the header, no module allocated."""
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "vocab_size": 1_000_000, "d_model": 200,
                                                        "n_heads": 4}))
    (checkpoint / "model.safetensors").write_bytes(struct.pack("<Q", 8) + b"{}      ")
    devices = []
    real_init = checkpoint_module.BudgetFormerForSequenceClassification.__init__

    def spy(self, cfg):  # type: ignore[no-untyped-def]
        devices.append(torch.get_default_device().type)
        real_init(self, cfg)

    monkeypatch.setattr(checkpoint_module.BudgetFormerForSequenceClassification, "__init__", spy)
    with pytest.raises(BfexportError) as caught:
        load_checkpoint(checkpoint)
    assert str(caught.value).startswith(f"{checkpoint / 'model.safetensors'}: ")
    assert "\n" not in str(caught.value)
    assert devices in ([], ["meta"])


def test_header_claiming_more_bytes_than_the_file_holds(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(BfexportError, match="model.safetensors: not a readable safetensors file"):
        load_checkpoint(checkpoint)


def raw_safetensors(header: dict[str, object], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize("content", [
    struct.pack("<Q", 10**12) + b"{}",  # header length past the file
    raw_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),  # bytes != shape
    raw_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),  # past the end
    raw_safetensors({"w": {"dtype": "F32", "shape": [2**40, 2**30], "data_offsets": [0, 4]}}, b"\0" * 4),
])
def test_inconsistent_header_is_one_line(checkpoint: Path, content: bytes) -> None:
    (checkpoint / "model.safetensors").write_bytes(content)
    with pytest.raises(BfexportError, match="model.safetensors: not a readable safetensors file") as caught:
        load_checkpoint(checkpoint)
    assert "\n" not in str(caught.value)
