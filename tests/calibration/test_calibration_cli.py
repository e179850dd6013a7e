"""bfexport calibrate on the command line: outputs, one-line errors with exit 2, Ctrl-C."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bfexport.cli import main
from converters.onnx import load_exported


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["bfexport", "calibrate", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_calibration_model_and_report(monkeypatch, capsys, model_path: Path, data_path: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "cal.json"
    code, stdout, _ = run(monkeypatch, capsys, model_path, "--data", data_path, "--target-flops", "0.8", "-o", out,
                          "--write-model", tmp_path / "m.onnx", "--report", tmp_path / "rep", "--json")
    assert code == 0
    shown = json.loads(stdout)
    saved = json.loads(out.read_text())
    assert shown["thresholds"] == saved["thresholds"] and 0.78 <= saved["achieved_flops_ratio"] <= 0.8
    assert load_exported(tmp_path / "m.onnx").default_caps == saved["caps"]
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"pareto.png", "head_usage.png", "report.json"}
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["chosen"]["thresholds"] == saved["thresholds"] and report["pareto"] and report["head_usage"]
    assert report["baselines"]["global_threshold_sweep"] and report["baselines"]["all_heads"]


@pytest.mark.parametrize("args, message", [
    (["--target-flops", "0.8", "--target-latency-ms", "3"], "exactly one of"),
    ([], "exactly one of"),
    (["--target-flops", "0.05"], "feasible range"),
    (["--target-flops", "1.5"], "above the dense model"),
    (["--target-flops", "0.8", "--percentile", "90"], "latency targets only"),
    (["--target-latency-fraction", "0.8", "--target-latency-ms", "3"], "exactly one of"),
    pytest.param(["--target-latency-ms", "3", "--runtime", "tensorrt"], "TensorRT is not installed",
                 marks=pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT here")),
    (["--target-flops", "0.8", "--seq-len", "999"], "max_length"),
])
def test_user_errors_exit_2_on_one_line(monkeypatch, capsys, model_path: Path, data_path: Path, tmp_path: Path,
                                        args: list[str], message: str) -> None:
    code, _, err = run(monkeypatch, capsys, model_path, "--data", data_path, "-o", tmp_path / "c.json", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "c.json").exists()


def test_empty_data_fails_clearly(monkeypatch, capsys, model_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run(monkeypatch, capsys, model_path, "--data", empty, "--target-flops", "0.8")
    assert code == 2 and "no usable rows" in err and err.count("\n") == 1


def test_dense_model_exit_2(monkeypatch, capsys, dense_model_path: Path, data_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, dense_model_path, "--data", data_path, "--target-flops", "0.8")
    assert code == 2 and "no budget inputs" in err


def test_ctrl_c_leaves_no_partial_outputs(monkeypatch, capsys, model_path: Path, data_path: Path,
                                          tmp_path: Path) -> None:
    """Interrupted while writing the outputs: none of them (nor a temporary file) is left."""
    import calibration.outputs as outputs

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "render", interrupted)
    out_dir = tmp_path / "outs"
    out_dir.mkdir()
    code, _, err = run(monkeypatch, capsys, model_path, "--data", data_path, "--target-flops", "0.8",
                       "-o", out_dir / "c.json", "--write-model", out_dir / "m.onnx", "--report", out_dir / "rep")
    assert code == 130 and "interrupted" in err
    assert list(out_dir.iterdir()) == []


def test_thresholds_only_keeps_caps_and_reports_adaptivity(monkeypatch, capsys, model_path: Path, data_path: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "cal.json"
    code, stdout, _ = run(monkeypatch, capsys, model_path, "--data", data_path, "--target-flops", "0.8", "-o", out,
                          "--thresholds-only", "--json")
    assert code == 0
    saved = json.loads(out.read_text())
    n_heads = load_exported(model_path).config.n_heads
    assert saved["caps"] == [n_heads] * len(saved["thresholds"]) and saved["achieved_flops_ratio"] <= 0.8
    layers = saved["adaptivity_per_layer"]
    assert len(layers) == len(saved["thresholds"]) and all(1 <= a["distinct_k"] <= n_heads for a in layers)
    assert json.loads(stdout)["adaptivity_per_layer"] == layers
