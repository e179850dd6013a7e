"""The command line: each command end to end on a tiny checkpoint, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bfexport.cli import run


def test_help_lists_every_command(bfexport) -> None:
    result = bfexport("--help")
    assert result.returncode == 0
    for command in ("train", "inspect", "convert", "validate", "calibrate", "bench", "deploy"):
        assert f"  {command}" in result.stdout


def test_convert_validate_inspect(bfexport, checkpoint: Path, data_file: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "m.onnx"
    converted = bfexport("convert", checkpoint, "-o", onnx_path, "--json")
    assert converted.returncode == 0, converted.stderr
    assert json.loads(converted.stdout)["flavor"] == "adaptive"

    validated = bfexport("validate", checkpoint, onnx_path, "--data", data_file, "--json")
    assert validated.returncode == 0, validated.stderr
    report = json.loads(validated.stdout)
    assert report["max_abs_diff"] <= 1e-4 and report["head_selection_agreement"] == 1.0 and report["samples"] > 0

    for target in (checkpoint, onnx_path):
        inspected = bfexport("inspect", target, "--data", data_file, "--json")
        assert inspected.returncode == 0, inspected.stderr
        info = json.loads(inspected.stdout)
        for key in ("accuracy", "n_heads", "n_layers", "d_model", "d_ff", "max_length", "mean_heads_per_layer",
                    "flops_ratio"):
            assert key in info
        assert 0 < info["flops_ratio"] <= 1.1 and len(info["mean_heads_per_layer"]) == 3
        hist, adaptivity = info["data"]["k_histogram_per_layer"], info["data"]["adaptivity_per_layer"]
        for layer_hist, a in zip(hist, adaptivity, strict=True):  # the columns agree with the histogram
            assert a["distinct_k"] == sum(n > 0 for n in layer_hist)
            assert a["top_k_share"] == round(max(layer_hist) / sum(layer_hist), 4)
        text = bfexport("inspect", target, "--data", data_file)
        assert "std k" in text.stdout and "top k share" in text.stdout and "k varies per input in" in text.stdout


def test_static_convert_picks_most_used_heads(bfexport, checkpoint: Path, data_file: Path, tmp_path: Path) -> None:
    result = bfexport("convert", checkpoint, "-o", tmp_path / "s.onnx", "--flavor", "static", "--heads", "2",
                      "--data", data_file, "--json")
    assert result.returncode == 0, result.stderr
    heads = json.loads(result.stdout)["static_heads"]
    assert len(heads) == 3 and all(len(h) == 2 for h in heads)
    assert bfexport("validate", checkpoint, tmp_path / "s.onnx", "--data", data_file).returncode == 0


def test_validate_fails_with_exit_1_on_a_mismatch(bfexport, checkpoint: Path, onnx_file: Path, data_file: Path) -> None:
    from safetensors.torch import load_file, save_file
    state = load_file(str(checkpoint / "model.safetensors"))  # changed after onnx_file was exported from it
    state["classifier.bias"] += 1.0
    save_file(state, str(checkpoint / "model.safetensors"))
    result = bfexport("validate", checkpoint, onnx_file, "--data", data_file, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["passed"] is False


@pytest.mark.parametrize("args, message", [
    (["convert", "{ckpt}", "-o", "{tmp}/x.onnx", "--opset", "9"], "opset 9 is not supported"),
    (["convert", "{ckpt}", "-o", "{tmp}/x.onnx", "--flavor", "static", "--heads", "9", "--data", "{data}"],
     "--heads must be in [1, 4]"),
    (["train", "--train", "{data}", "--validation", "{data}", "-o", "{tmp}/no/such/dir/ckpt"], "does not exist"),
    (["inspect", "{tmp}"], "config.json: file not found"),
    (["validate", "{ckpt}", "{data}"], "not a readable ONNX file"),
    (["inspect", "{ckpt}", "--data", "{tmp}/missing.jsonl"], "missing.jsonl"),
    (["deploy"], "give SOURCE"),
])
def test_user_errors_are_one_line_with_exit_2(bfexport, args, message: str, checkpoint: Path, data_file: Path,
                                              tmp_path: Path) -> None:
    filled = [a.format(ckpt=checkpoint, tmp=tmp_path, data=data_file) for a in args]
    result = bfexport(*filled)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


HOSTILE_CHECKPOINTS = ["pickle payload", "truncated safetensors"]
HOSTILE_ONNX = ["corrupt onnx", "foreign onnx"]
READS_CHECKPOINTS = {  # every command that reads a checkpoint; {bad} is the hostile one
    "inspect": ["inspect", "{bad}"],
    "convert": ["convert", "{bad}", "-o", "{tmp}/x.onnx"],
    "validate": ["validate", "{bad}", "{onnx}"],
    "bench": ["bench", "{bad}", "--seq", "8", "--threads", "1", "--batch", "1", "--repeats", "1"],
    "deploy": ["deploy", "{bad}", "--repo", "{tmp}/repo"],
}
READS_ONNX = {  # every command that reads an exported model
    "inspect": ["inspect", "{bad}"],
    "validate": ["validate", "{ckpt}", "{bad}"],
    "calibrate": ["calibrate", "{bad}", "--data", "{data}", "--target-flops", "0.9", "-o", "{tmp}/x.json"],
    "deploy": ["deploy", "{bad}", "--repo", "{tmp}/repo"],
}
CASES = ([(c, k) for c in READS_CHECKPOINTS for k in HOSTILE_CHECKPOINTS]
         + [(c, k) for c in READS_ONNX for k in HOSTILE_ONNX])


def hostile(kind: str, checkpoint: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A bad model file or checkpoint directory, and the file a pickle payload would create."""
    import pickle
    import shutil

    import onnx

    marker = tmp_path / "payload-ran"
    if kind in ("pickle payload", "truncated safetensors"):
        bad = tmp_path / "bad-ckpt"
        shutil.copytree(checkpoint, bad)
        weights = bad / "model.safetensors"

        class Payload:
            def __reduce__(self):
                return (Path.touch, (marker,))

        if kind == "pickle payload":
            weights.write_bytes(pickle.dumps(Payload()))
        else:
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return bad, marker
    bad = tmp_path / "bad.onnx"
    if kind == "corrupt onnx":
        bad.write_bytes(b"\x08\x07garbage" * 100)
    else:  # a valid ONNX model that bfexport did not write
        x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
        y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
        graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        onnx.save(onnx.helper.make_model(graph), str(bad))
    return bad, marker


@pytest.mark.parametrize("command, kind", CASES)
def test_every_command_refuses_hostile_models_on_one_line(bfexport, command: str, kind: str, checkpoint: Path,
                                                          onnx_file: Path, data_file: Path, tmp_path: Path) -> None:
    bad, marker = hostile(kind, checkpoint, tmp_path)
    commands = READS_CHECKPOINTS if kind in HOSTILE_CHECKPOINTS else READS_ONNX
    args = [a.format(bad=bad, ckpt=checkpoint, onnx=onnx_file, tmp=tmp_path, data=data_file)
            for a in commands[command]]
    result = bfexport(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert not any(p.name in ("x.onnx", "x.json", "repo") for p in tmp_path.iterdir())


def test_a_bug_is_exit_3_on_one_line_and_debug_shows_the_traceback(bfexport, checkpoint: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    import bfexport.cli.inspect_cmd as inspect_cmd

    def bug(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(inspect_cmd, "load_checkpoint", bug)
    result = bfexport("inspect", checkpoint)
    assert result.returncode == 3
    assert result.stderr.startswith("internal error: ZeroDivisionError: a bug") and "--debug" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(ZeroDivisionError):
        run(["--debug", "inspect", str(checkpoint)])


BAD_DATA = {  # each is one row a user might hand us; the message names the file and line
    "invalid UTF-8": b'{"text": "ok", "label": "libs"}\n{"text": "\xff\xfe", "label": "libs"}\n',
    "unknown label": b'{"text": "ok", "label": "libs"}\n{"text": "ok", "label": "no-such-label"}\n',
    "not JSON": b'{"text": "ok", "label": "libs"}\n{"text": \n',
}
READS_DATA = {
    "train": ["train", "--train", "{bad}", "--validation", "{bad}", "-o", "{tmp}/trained", "--epochs", "1"],
    "inspect": ["inspect", "{ckpt}", "--data", "{bad}"],
    "convert": ["convert", "{ckpt}", "-o", "{tmp}/x.onnx", "--flavor", "static", "--heads", "2", "--data", "{bad}"],
    "validate": ["validate", "{ckpt}", "{onnx}", "--data", "{bad}"],
    "calibrate": ["calibrate", "{onnx}", "--data", "{bad}", "--target-flops", "0.9", "-o", "{tmp}/x.json"],
}


# labels are checked where they are scored against a model's labels (train takes its labels from the data)
DATA_CASES = [(c, k) for c in READS_DATA for k in BAD_DATA if k != "unknown label" or c in ("inspect", "calibrate")]


@pytest.mark.parametrize("command, kind", DATA_CASES)
def test_every_command_refuses_bad_data_naming_the_line(bfexport, command: str, kind: str, checkpoint: Path,
                                                         onnx_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(BAD_DATA[kind])
    args = [a.format(bad=bad, ckpt=checkpoint, onnx=onnx_file, tmp=tmp_path) for a in READS_DATA[command]]
    result = bfexport(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "bad.jsonl" in result.stderr and ":2" in result.stderr, result.stderr
    assert not any(p.name in ("x.onnx", "x.json", "trained") for p in tmp_path.iterdir())
