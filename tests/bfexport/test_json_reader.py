"""JSON that would crash a reader (deep nesting, huge integers, lone surrogates) is refused on one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bfexport.data import read_examples
from bfexport.errors import BfexportError
from bfexport.files import MAX_JSON_DEPTH, loads_json, read_json

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text, message", [
    (DEEP, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"),
    ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), f"JSON nested deeper than {MAX_JSON_DEPTH} levels"),
    ('{"vocab_size": ' + "9" * 5001 + "}", "vocab_size is an integer of 5,001 digits (at most 4,300 are read)"),
    ('{"a": [1, {"b": -' + "1" * 5001 + "}]}", "a[1].b is an integer of 5,001 digits (at most 4,300 are read)"),
])
def test_refused_naming_the_source_and_path(text: str, message: str) -> None:
    with pytest.raises(BfexportError) as caught:
        loads_json(text, "f.json")
    assert str(caught.value) == f"f.json: {message}"


def test_ordinary_documents_read_as_json_loads() -> None:
    text = json.dumps({"a": [1, 2.5, "x", None, True, {"b": [[["deep enough"]]]}], "n": 10**4000})
    assert loads_json(text, "f.json") == json.loads(text)
    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "f.json") is not None


def test_calibration_or_config_file(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(DEEP)
    with pytest.raises(BfexportError, match="calibration.json: JSON nested deeper"):
        read_json(path)


@pytest.mark.parametrize("row, message", [
    (DEEP, ":1: JSON nested deeper"),
    ('{"text": "ok", "label": ' + "1" * 5001 + "}", ":1: label is an integer of 5,001 digits"),
    ('{"text": "bad \\ud800 text", "label": "a"}', ":1: 'text' holds a lone surrogate"),
    ('{"text": "ok", "label": "\\udfff"}', ":1: 'label' holds a lone surrogate"),
])
def test_bad_data_row_names_the_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(BfexportError) as caught:
        read_examples(path)
    assert str(caught.value).startswith(f"{path}{message}")


@pytest.mark.parametrize("config", [DEEP, '{"vocab_size": ' + "7" * 5001 + "}"])
def test_checkpoint_config_is_exit_2(bfexport, checkpoint: Path, config: str) -> None:
    (checkpoint / "config.json").write_text(config)
    result = bfexport("inspect", checkpoint)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {checkpoint / 'config.json'}: ")
    assert result.stderr.count("\n") == 1


def test_texts_given_through_the_api_are_checked_too(tokenizer) -> None:
    from bfexport.data import encode

    with pytest.raises(BfexportError, match="text 1: holds a lone surrogate"):
        encode(tokenizer, ["fine", "bad \udc80"], 16)
    with pytest.raises(BfexportError, match="text 0: expected a string, got int"):
        encode(tokenizer, [3], 16)  # type: ignore[list-item]


@pytest.mark.parametrize("metadata", [DEEP, '{"vocab_size": ' + "7" * 5001 + "}"])
def test_onnx_metadata_is_read_by_the_same_reader(onnx_file: Path, tmp_path: Path, metadata: str) -> None:
    import onnx

    from bfexport.exported import load_exported, save_onnx, set_metadata
    from bfexport.names import KEY_CONFIG

    proto = onnx.load(str(onnx_file))
    set_metadata(proto, {KEY_CONFIG: metadata})
    with pytest.raises(BfexportError, match=f"corrupt bfexport metadata \\({KEY_CONFIG}: "):
        load_exported(save_onnx(proto, tmp_path / "bad.onnx"))
