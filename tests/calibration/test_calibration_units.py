"""calibration.json and report.json state the unit of `cost`, and budgets read back from a file
print as written (0.05, not float32's 0.05000000074505806)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bfexport.calibration_result import with_defaults
from bfexport.cli import main
from calibration import FlopsTarget, LatencyTarget, calibrate
from converters.onnx import load_exported, save_onnx
from tests.calibration.test_calibration_latency import FakeRuntime


@pytest.fixture(scope="module")
def calibrated_path(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with defaults a calibration would write."""
    out = tmp_path_factory.mktemp("defaults") / "defaults.onnx"
    return save_onnx(with_defaults(load_exported(model_path), [0.05, 0.3], [4, 2]), out)


def test_defaults_read_back_as_written(calibrated_path: Path) -> None:
    assert load_exported(calibrated_path).default_thresholds == [0.05, 0.3]


def test_calibrate_outputs_state_units_and_print_plain_thresholds(calibrated_path: Path, data_path: Path,
                                                                  tmp_path: Path, monkeypatch, capsys) -> None:
    out, report = tmp_path / "cal.json", tmp_path / "report"
    monkeypatch.setattr(sys, "argv", ["bfexport", "calibrate", str(calibrated_path), "--data", str(data_path),
                                      "--samples", "48", "--target-flops", "0.8", "-o", str(out),
                                      "--report", str(report)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().err
    saved, shown = json.loads(out.read_text()), json.loads((report / "report.json").read_text())
    assert saved["cost_unit"] == shown["cost_unit"] == "flops_ratio"
    assert saved["model"]["default_thresholds"] == shown["model"]["default_thresholds"] == [0.05, 0.3]
    for text in (printed, out.read_text(), (report / "report.json").read_text()):
        assert "0.0500000007" not in text and "0.30000001" not in text  # float32 widened to float64


def test_latency_calibration_costs_are_in_ms(model_path: Path, data_path: Path) -> None:
    result = calibrate(model_path, data_path, LatencyTarget(fraction=0.8), runtime_factory=FakeRuntime,
                       verify_sessions=1, samples=48)
    assert result.cost_unit == "ms" and result.to_json()["cost_unit"] == "ms"
    assert calibrate(model_path, data_path, FlopsTarget(0.8), samples=48).cost_unit == "flops_ratio"
