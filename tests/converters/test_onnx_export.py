"""Every flavor computes what PyTorch computes, and the files are sound, stable and atomic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from converters import (
    AdaptiveExport,
    DenseExport,
    MaskedExport,
    StaticExport,
    export,
    export_with_metadata,
    load_exported,
    save_onnx,
)
from converters.validate import validate
from tests.factories import tiny_model

FLAVORS = {
    "adaptive": AdaptiveExport(),
    "masked": MaskedExport(),
    "dense": DenseExport(),
    "static": StaticExport(heads=[[0, 2], [3], [1, 2, 3]]),
    "adaptive-opset23": AdaptiveExport(opset=23),  # opset 23: attention is one Attention node
    "masked-opset23": MaskedExport(opset=23),
    "dense-opset23": DenseExport(opset=23),
    "static-opset23": StaticExport(opset=23, heads=[[0, 2], [3], [1, 2, 3]]),
}


def classifier(model, tokenizer, config, tmp_path: Path) -> OnnxClassifier:
    path = save_onnx(export_with_metadata(model, config, tokenizer.to_str()), tmp_path / "model.onnx")
    return OnnxClassifier(path)


@pytest.mark.parametrize("name", FLAVORS)
def test_flavor_matches_pytorch(name: str, model, tokenizer, texts, tmp_path: Path) -> None:
    report = validate(model, classifier(model, tokenizer, FLAVORS[name], tmp_path), texts, batch_size=5)
    assert report.max_abs_diff <= 1e-4, report
    assert report.head_selection_agreement == 1.0, report
    assert report.passed
    if name.startswith(("adaptive", "masked")):
        assert report.cases["forced_k"] == 5 * model.config.n_heads


def test_fp16_export_runs_close_to_pytorch(model, tokenizer, texts, tmp_path: Path) -> None:
    report = validate(model, classifier(model, tokenizer, AdaptiveExport(fp16=True), tmp_path), texts)
    assert report.tolerance == 2e-2
    assert report.max_abs_diff <= report.tolerance


def test_export_is_deterministic_and_checked(model, tokenizer, tmp_path: Path) -> None:
    a = save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "a.onnx")
    b = save_onnx(export_with_metadata(tiny_model(vocab_size=model.config.vocab_size), AdaptiveExport(),
                                       tokenizer.to_str()), tmp_path / "b.onnx")
    assert a.read_bytes() == b.read_bytes()
    onnx.checker.check_model(str(a), full_check=True)
    inputs = {i.name: i for i in onnx.load(str(a)).graph.input}
    assert list(inputs) == ["input_ids", "attention_mask", "budget_thresholds", "head_caps"]


def test_export_is_byte_identical_in_another_process(checkpoint: Path, tmp_path: Path) -> None:
    """Another interpreter, another hash seed: the same bytes (no dict/set order or time leaks)."""
    from bfexport.checkpoint import load_checkpoint, load_tokenizer_json

    here = save_onnx(export_with_metadata(load_checkpoint(checkpoint), AdaptiveExport(),
                                          load_tokenizer_json(checkpoint)), tmp_path / "here.onnx")
    code = ("import sys; from bfexport.cli import run; "
            "sys.exit(run(['convert', sys.argv[1], '-o', sys.argv[2]]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).parents[2])}
    subprocess.run([sys.executable, "-c", code, str(checkpoint), str(tmp_path / "there.onnx")], env=env,
                   check=True, capture_output=True)
    assert (tmp_path / "there.onnx").read_bytes() == here.read_bytes()


def test_metadata_round_trip(model, tokenizer, tmp_path: Path) -> None:
    heads = [[0], [1, 2], [3]]
    path = save_onnx(export_with_metadata(model, StaticExport(heads=heads), tokenizer.to_str()), tmp_path / "s.onnx")
    loaded = load_exported(path)
    assert (loaded.config, loaded.flavor, loaded.static_heads) == (model.config, "static", heads)
    assert loaded.tokenizer_json == tokenizer.to_str()


@pytest.mark.parametrize("config, message", [
    (AdaptiveExport(opset=11), "opset 11 is not supported"),
    (StaticExport(heads=[[0], [1]]), "each of the 3 layers"),
    (StaticExport(heads=[[0], [4], [1]]), "distinct heads in"),
    (StaticExport(heads=[[0, 0], [1], [1]]), "distinct heads in"),
])
def test_bad_export_configs(model, config, message: str) -> None:
    with pytest.raises(BfexportError, match=message):
        export(model, config)


def test_dense_trained_checkpoint_refuses_adaptive_export() -> None:
    model = tiny_model(adaptive=False)
    with pytest.raises(BfexportError, match="--flavor dense"):
        export(model, AdaptiveExport())
    export(model, DenseExport())


def test_interrupted_save_leaves_no_file(model, tmp_path: Path, monkeypatch) -> None:
    proto = export(model, AdaptiveExport())

    def interrupted(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_onnx(proto, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_not_our_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(BfexportError, match="not a readable ONNX file|not a bfexport model"):
        load_exported(junk)
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(BfexportError, match="not a bfexport model"):
        load_exported(foreign)
