"""The metadata an exported file carries is checked against its graph on load: a file whose
embedded config claims other sizes is refused in one line by every command, not reported on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest

from bfexport.errors import BfexportError
from bfexport.exported import set_metadata
from bfexport.names import KEY_CONFIG, KEY_HEADS
from converters import AdaptiveExport, DenseExport, StaticExport, export_with_metadata, load_exported, save_onnx
from tests.factories import tiny_model, variant_model


def _edited(path: Path, out: Path, **changes: object) -> Path:
    """A copy of the exported file at `path` whose metadata config has `changes` applied."""
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    config = {**json.loads(meta[KEY_CONFIG]), **changes}
    set_metadata(proto, {KEY_CONFIG: json.dumps(config)})
    return save_onnx(proto, out)


@pytest.fixture()
def exported(tmp_path: Path, tokenizer) -> Path:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    return save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "m.onnx")


LIES = {  # what a hand-edited config may claim (the tiny model: 3 layers x 4 heads, d_model 32, 4 labels)
    "n_layers": dict(n_layers=2, budget_thresholds=[0.5, 0.5], head_caps=[4, 4]),
    "n_heads": dict(n_heads=8, head_caps=[8, 8, 8]),
    "d_model": dict(d_model=64),
    "d_ff": dict(d_ff=128),
    "vocab_size": dict(vocab_size=99),
    "max_length": dict(max_length=64),
    "labels": dict(labels=["libs", "games", "python", "doc", "extra"]),
    "norm": dict(norm="post"),
    "pooler": dict(pooler="tanh"),
    "type_vocab_size": dict(type_vocab_size=2),
    "position_offset": dict(position_offset=2),
}


@pytest.mark.parametrize("field", sorted(LIES))
def test_metadata_that_does_not_match_the_graph_is_refused(exported: Path, tmp_path: Path, field: str) -> None:
    lying = _edited(exported, tmp_path / "lying.onnx", **LIES[field])
    with pytest.raises(BfexportError, match="does not describe this graph") as info:
        load_exported(lying)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("flavor", [AdaptiveExport(), DenseExport(), StaticExport(heads=[[0, 1], [2], [3, 1]]),
                                    AdaptiveExport(fp16=True)], ids=["adaptive", "dense", "static", "fp16"])
def test_every_flavor_bfexport_writes_passes_the_check(tmp_path: Path, tokenizer, flavor) -> None:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    path = save_onnx(export_with_metadata(model, flavor, tokenizer.to_str()), tmp_path / "m.onnx")
    assert load_exported(path).config == model.config


@pytest.mark.parametrize("claim, message", [
    (dict(norm="pre"), "config norm 'pre' implies no initializer ln_emb.weight, but the graph has one"),
    (dict(pooler="none"), "config pooler 'none' implies no initializer pooler.weight, but the graph has one"),
    (dict(type_vocab_size=0), "implies no initializer type_emb.weight"),
    (dict(position_offset=0), "config max_length, position_offset, d_model imply pos_emb.weight of shape [32, 32]"),
])
def test_a_bert_shaped_graph_claiming_another_architecture_is_refused(tmp_path: Path, tokenizer,
                                                                      claim: dict[str, object], message: str) -> None:
    model = variant_model("bert", vocab_size=tokenizer.get_vocab_size(), position_offset=2)
    path = save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "m.onnx")
    assert load_exported(path).config == model.config
    with pytest.raises(BfexportError, match=re.escape(message)):
        load_exported(_edited(path, tmp_path / "lying.onnx", **claim))


def test_static_head_sets_that_do_not_match_the_weights_are_refused(tmp_path: Path, tokenizer) -> None:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    proto = export_with_metadata(model, StaticExport(heads=[[0, 1], [2], [3, 1]]), tokenizer.to_str())
    set_metadata(proto, {KEY_HEADS: json.dumps([[0], [2], [3, 1]])})
    with pytest.raises(BfexportError, match="qkv_weight"):
        load_exported(save_onnx(proto, tmp_path / "s.onnx"))


def test_deeply_nested_metadata_is_a_one_line_error(exported: Path, tmp_path: Path) -> None:
    proto = onnx.load(str(exported))
    set_metadata(proto, {KEY_CONFIG: "[" * 100_000 + "]" * 100_000})
    with pytest.raises(BfexportError, match="corrupt bfexport metadata"):
        load_exported(save_onnx(proto, tmp_path / "deep.onnx"))


def _foreign(exported: Path, out: Path) -> Path:
    """Another graph (one Identity node) carrying the metadata of `exported`."""
    node = onnx.helper.make_node("Identity", ["input_ids"], ["logits"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "foreign", [value("input_ids", onnx.TensorProto.INT64, ["b", "s"])],
                                   [value("logits", onnx.TensorProto.INT64, ["b", "s"])])
    foreign = onnx.helper.make_model(graph)
    foreign.metadata_props.extend(onnx.load(str(exported)).metadata_props)
    return save_onnx(foreign, out)


def test_a_foreign_graph_with_bfexport_metadata_is_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match="tok_emb.weight"):
        load_exported(_foreign(exported, tmp_path / "foreign.onnx"))


@pytest.mark.parametrize("command", ["inspect", "calibrate"])
def test_a_foreign_graph_given_with_data_is_one_line(bfexport, exported: Path, data_file: Path,
                                                     tmp_path: Path, command: str) -> None:
    foreign = _foreign(exported, tmp_path / "foreign.onnx")
    extra = ["--target-flops", "0.9", "-o", tmp_path / "c.json"] if command == "calibrate" else []
    result = bfexport(command, foreign, "--data", data_file, *extra)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "tok_emb.weight" in result.stderr


@pytest.mark.parametrize("command", ["inspect", "inspect-data", "validate", "calibrate", "deploy"])
def test_every_command_refuses_the_file_in_one_line(bfexport, exported: Path, checkpoint: Path,
                                                    data_file: Path, tmp_path: Path,
                                                    command: str) -> None:
    lying = _edited(exported, tmp_path / "lying.onnx", d_ff=128)
    args = {"inspect": ["inspect", lying], "inspect-data": ["inspect", lying, "--data", data_file],
            "validate": ["validate", checkpoint, lying, "--data", data_file],
            "calibrate": ["calibrate", lying, "--data", data_file, "--target-flops", "0.9", "-o", tmp_path / "c.json"],
            "deploy": ["deploy", lying, "--repo", tmp_path / "repo"]}[command]
    result = bfexport(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "d_ff" in result.stderr
