"""deploy --calibration reads calibration.json strictly: caps of 2.9, true or "8" are errors naming
the field (never truncated or coerced), and a calibration whose target was not met is refused
unless --allow-unmet-target, as calibrate itself refuses --write-model then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bfexport.calibration_result import CalibrationResult
from bfexport.cli import run
from bfexport.errors import BfexportError
from converters import AdaptiveExport, export_with_metadata, save_onnx
from converters.triton import DeployOptions, deploy
from tests.converters.triton.test_deploy import make_calibration
from tests.factories import tiny_model


@pytest.fixture()
def onnx_path(tmp_path: Path, tokenizer) -> Path:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())  # 3 layers of 4 heads
    return save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "m.onnx")


def _calibration(onnx_path: Path, out: Path, **changes: object) -> Path:
    make_calibration(onnx_path, out, [0.35, 0.6, 0.5], [3, 2, 4])
    saved = {**json.loads(out.read_text()), **changes}
    out.write_text(json.dumps(saved))
    return out


BAD = {
    "cap 2.9": (dict(caps=[3, 2.9, 4]), "caps"),
    "cap true": (dict(caps=[3, True, 4]), "caps"),
    "cap '2'": (dict(caps=[3, "2", 4]), "caps"),
    "cap 'x'": (dict(caps=[3, "x", 4]), "caps"),
    "cap null": (dict(caps=[3, None, 4]), "caps"),
    "caps null": (dict(caps=None), "caps"),
    "cap 0": (dict(caps=[3, 0, 4]), "caps"),
    "cap above n_heads": (dict(caps=[3, 5, 4]), "4 heads"),
    "threshold 1.5": (dict(thresholds=[0.35, 1.5, 0.5]), "thresholds"),
    "threshold '0.5'": (dict(thresholds=[0.35, "0.5", 0.5]), "thresholds"),
    "threshold NaN": (dict(thresholds=[0.35, float("nan"), 0.5]), "thresholds"),
    "thresholds a number": (dict(thresholds=0.5), "thresholds"),
    "lengths differ": (dict(thresholds=[0.35, 0.6]), "same length"),
    "fewer layers": (dict(thresholds=[0.35, 0.6], caps=[3, 2]), "3 layers"),
    "target_met 'yes'": (dict(target_met="yes"), "target_met"),
    "ratio a string": (dict(achieved_flops_ratio="0.6"), "achieved_flops_ratio"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_calibration_is_one_line_naming_the_field(onnx_path: Path, tmp_path: Path, capsys, case: str) -> None:
    changes, field = BAD[case]
    calibration = _calibration(onnx_path, tmp_path / "cal.json", **changes)
    capsys.readouterr()
    code = run(["deploy", str(onnx_path), "--repo", str(tmp_path / "repo"), "--calibration", str(calibration)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and field in err, err
    assert not (tmp_path / "repo").exists()


def test_a_calibration_loaded_keeps_exact_types(onnx_path: Path, tmp_path: Path) -> None:
    loaded = CalibrationResult.load(_calibration(onnx_path, tmp_path / "cal.json"))
    assert loaded.caps == [3, 2, 4] and all(type(c) is int for c in loaded.caps)


def test_unmet_target_is_refused_unless_allowed(onnx_path: Path, tmp_path: Path) -> None:
    calibration = _calibration(onnx_path, tmp_path / "cal.json", target_met=False)
    with pytest.raises(BfexportError, match="did not meet its target.*--allow-unmet-target"):
        deploy(onnx_path, tmp_path / "repo", DeployOptions(calibration=calibration))
    assert not (tmp_path / "repo").exists()
    result = deploy(onnx_path, tmp_path / "repo", DeployOptions(calibration=calibration, allow_unmet_target=True))
    assert result.default_caps == [3, 2, 4]
    assert [n for n in result.notes if "did not meet its target" in n and "--allow-unmet-target" in n]
