"""trt-plugin files through the commands that run them in ONNX Runtime: an fp16 one validates
and inspects (its plugin nodes' inputs cast to the Python op's float32), and calibrate refuses
any in one line, pointing to the adaptive export whose calibration deploy applies to TensorRT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_extensions")


@pytest.mark.parametrize("command", ["validate", "inspect"])
def test_fp16_trt_plugin_file_runs_in_onnx_runtime(bfexport, checkpoint: Path, data_file: Path,
                                                   tmp_path: Path, command: str) -> None:
    path = tmp_path / "tp16.onnx"
    assert bfexport("convert", checkpoint, "-o", path, "--flavor", "trt-plugin", "--fp16").returncode == 0
    args = [checkpoint, path] if command == "validate" else [path]
    result = bfexport(command, *args, "--data", data_file, "--samples", "8", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    if command == "validate":
        assert out["passed"] and out["fp16"] and out["max_abs_diff"] <= 2e-2
    else:
        assert out["flavor"] == "trt-plugin" and 0 < out["flops_ratio"] <= 1.1


def test_calibrate_refuses_a_trt_plugin_file_before_any_work(bfexport, checkpoint: Path,
                                                             data_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "tp.onnx"
    assert bfexport("convert", checkpoint, "-o", path, "--flavor", "trt-plugin").returncode == 0
    result = bfexport("calibrate", path, "--data", data_file, "--target-flops", "0.9", "-o", tmp_path / "c.json")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "adaptive export" in result.stderr and "--backend tensorrt" in result.stderr
    assert not (tmp_path / "c.json").exists()
