"""A calibration.json to deploy with: loaded strictly, checked against the model, applied as its defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bfexport.calibration_result import CalibrationResult, with_defaults
from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel
from bfexport.flavors import FLAVORS


def load_calibration(path: str | Path, allow_unmet_target: bool = False) -> CalibrationResult:
    """The calibration.json to deploy with (a CalibrationResult), strictly type-checked. One whose
    target was not met is refused unless allow_unmet_target, as `calibrate` refuses --write-model then."""
    result = CalibrationResult.load(path)
    if not result.target_met and not allow_unmet_target:
        raise BfexportError(f"{path}: this calibration did not meet its target {target_text(result.target)} "
                            "(`bfexport calibrate` exited 1 and wrote no model); recalibrate, or pass "
                            "--allow-unmet-target to deploy it anyway")
    return result


def target_text(target: dict[str, Any]) -> str:
    if target.get("kind") == "flops":
        return f"FLOPs ratio <= {target.get('ratio')}"
    return f"p{target.get('percentile')} <= {target.get('ms')} ms"


def apply_calibration(path: Path, result: CalibrationResult, exported: ExportedModel,
                      model: Any) -> tuple[ExportedModel, dict[str, Any]]:
    """The export with the calibrated defaults of `result` (load_calibration(path)), after checking
    the calibration belongs to it."""
    try:
        result.check_model(exported)
    except BfexportError:
        # From a checkpoint, the calibration may come from another flavor of the same weights
        # (calibrated on the adaptive file, deployed as trt-plugin): check it against that one.
        flavor = str(result.model.get("flavor", ""))
        if model is None or flavor == exported.flavor or flavor not in FLAVORS or not FLAVORS[flavor].routed:
            raise
        from converters.onnx import export_with_metadata

        reference = ExportedModel(exported.path, export_with_metadata(model, FLAVORS[flavor](), None),
                                  exported.config, flavor, None, None)
        result.check_model(reference)
    note = {"target": result.target, "achieved_flops_ratio": result.achieved_flops_ratio,
            "fingerprint": result.model.get("fingerprint")}
    proto = with_defaults(exported, result.thresholds, result.caps, note)
    updated = ExportedModel(exported.path, proto, exported.config, exported.flavor, exported.static_heads,
                            exported.tokenizer_json)
    info = {"path": str(path), "thresholds": list(result.thresholds), "caps": list(result.caps),
            "target": result.target, "achieved_flops_ratio": result.achieved_flops_ratio,
            "target_met": result.target_met}
    return updated, info
