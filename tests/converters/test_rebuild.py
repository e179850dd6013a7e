"""Rebuilding the PyTorch model from an exported file: checkpoint -> export -> rebuild gives the
same weights and the same outputs, and files that do not hold the whole model are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from bfexport.calibration_result import with_defaults
from bfexport.checkpoint import load_checkpoint
from bfexport.data import encode
from bfexport.errors import BfexportError
from converters import (
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
    export_with_metadata,
    load_exported,
    save_onnx,
)
from converters.onnx.rebuild import rebuild_model


def exported_file(model: torch.nn.Module, config: ExportConfig, path: Path) -> Path:
    return save_onnx(export_with_metadata(model, config), path)


def batch(texts: list[str], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = encode(tokenizer, texts[:8], 32)
    return torch.from_numpy(ids), torch.from_numpy(mask)


@pytest.mark.parametrize("config", [AdaptiveExport(), MaskedExport(), TrtPluginExport(), AdaptiveExport(opset=23)],
                         ids=["adaptive", "masked", "trt-plugin", "adaptive-opset23"])
def test_round_trip_gives_the_checkpoints_weights_and_outputs(checkpoint: Path, texts: list[str], tokenizer,
                                                              tmp_path: Path, config: ExportConfig) -> None:
    original = load_checkpoint(checkpoint)
    rebuilt = rebuild_model(load_exported(exported_file(original, config, tmp_path / "m.onnx")))
    expected = original.state_dict()
    assert rebuilt.state_dict().keys() == expected.keys()
    assert all(torch.equal(t, expected[k]) for k, t in rebuilt.state_dict().items())
    ids, mask = batch(texts, tokenizer)
    tau = torch.linspace(0.05, 1.0, ids.shape[0])[:, None].expand(-1, original.config.n_layers)
    a, b = original.predict(ids, mask, thresholds=tau), rebuilt.predict(ids, mask, thresholds=tau)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.head_counts, b.head_counts)
    assert len(set(a.head_counts.flatten().tolist())) > 1  # budgets really vary
    assert not rebuilt.training and rebuilt.config == original.config


@pytest.mark.parametrize("config", [DenseExport(), StaticExport(heads=[[3, 1, 0, 2], [0, 1, 2, 3], [2, 3, 1, 0]])],
                         ids=["dense", "static-all-heads"])
def test_files_without_router_rebuild_to_every_head(model, texts: list[str], tokenizer, tmp_path: Path,
                                                    config: ExportConfig) -> None:
    path = exported_file(model, config, tmp_path / "m.onnx")
    rebuilt = rebuild_model(load_exported(path))
    assert not rebuilt.config.adaptive
    state = rebuilt.state_dict()
    for name, t in model.state_dict().items():
        assert torch.equal(state[name], torch.zeros_like(t) if ".router." in name else t), name
    ids, mask = batch(texts, tokenizer)
    out = rebuilt.predict(ids, mask)
    assert (out.head_counts == model.config.n_heads).all()
    onnx_logits = ort.InferenceSession(str(path)).run(["logits"], {"input_ids": ids.numpy(),
                                                                    "attention_mask": mask.numpy()})[0]
    assert np.abs(out.logits.numpy() - onnx_logits).max() < 1e-5


def test_fp16_files_and_calibrated_defaults(model, tmp_path: Path) -> None:
    exported = load_exported(exported_file(model, AdaptiveExport(fp16=True), tmp_path / "m.onnx"))
    rebuilt = rebuild_model(exported)
    assert all(torch.equal(t, model.state_dict()[k].half().float()) for k, t in rebuilt.state_dict().items())
    exported.proto = with_defaults(exported, [0.3, 0.6, 1.0], [4, 2, 3])
    assert rebuild_model(exported).config.budget_thresholds == pytest.approx([0.3, 0.6, 1.0])
    assert rebuild_model(exported).config.head_caps == [4, 2, 3]


def _without(proto: onnx.ModelProto, name: str, replacement: np.ndarray | None = None) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = [t for t in out.graph.initializer if t.name != name]
    if replacement is not None:
        keep.append(numpy_helper.from_array(replacement, name))
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


def test_files_missing_weights_are_refused(model, tmp_path: Path) -> None:
    static = load_exported(exported_file(model, StaticExport(heads=[[0, 1], [2], [0, 1, 2, 3]]), tmp_path / "s.onnx"))
    with pytest.raises(BfexportError, match=r"keeps heads \[0, 1\] of 4 in layer 0.*cannot be rebuilt"):
        rebuild_model(static)
    exported = load_exported(exported_file(model, AdaptiveExport(), tmp_path / "a.onnx"))
    proto = exported.proto
    exported.proto = _without(proto, "blocks.1.ffn.up.weight")
    with pytest.raises(BfexportError, match="no initializer 'blocks.1.ffn.up.weight'"):
        rebuild_model(exported)
    exported.proto = _without(proto, "classifier.bias", np.zeros(7, dtype=np.float32))
    with pytest.raises(BfexportError, match=r"initializer 'classifier.bias' has shape \(7,\)"):
        rebuild_model(exported)
