"""The shared option groups keep each command's required options required and defaults as documented."""

from __future__ import annotations

import pytest

from bfexport.cli import cli, run


@pytest.mark.parametrize(("args", "missing"), [
    (["calibrate", "{model}", "--target-flops", "0.5"], "'--data'"),
    (["convert", "{ckpt}"], "'-o' / '--output'"),
    (["train", "--train", "t.jsonl", "--validation", "v.jsonl"], "'-o' / '--output'"),
])
def test_required_options_stay_required(tmp_path, capsys, args: list[str], missing: str) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "ckpt").mkdir()
    args = [a.format(model=tmp_path / "m.onnx", ckpt=tmp_path / "ckpt") for a in args]
    assert run(args) == 2
    assert f"Missing option {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "samples", "output"), [
    ("calibrate", 1000, "calibration.json"), ("validate", 64, None), ("convert", None, None), ("inspect", None, None),
])
def test_per_command_defaults(command: str, samples: int | None, output: str | None) -> None:
    params = {p.name: p for p in cli.commands[command].params}
    assert params["samples"].default == samples
    assert params["data_path"].required == (command == "calibrate")
    if "output" in params:
        assert params["output"].required == (output is None)
        assert output is None or params["output"].default == output
