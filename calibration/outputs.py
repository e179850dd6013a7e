"""Writing a calibration's outputs together: calibration.json, the calibrated model, the report.

Every output is staged beside its destination and moved into place at the end, so an error or
Ctrl-C while computing or writing leaves the previous files (or none). The renames run report,
model, calibration.json: the json appears only when the others are in.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bfexport.calibration_result import CalibrationResult, with_defaults
from bfexport.exported import ExportedModel, save_onnx
from bfexport.files import atomic_dir, atomic_file
from calibration.report import REPORT_DIR, render


def save_outputs(result: CalibrationResult, exported: ExportedModel, output: str | Path, *,
                 model: str | Path | None = None, report: str | Path | None = None) -> dict[str, str]:
    """Write `result` to `output` and, when given, `exported` with the calibrated defaults to
    `model` and the figures to the `report` directory. Returns {kind: path} of what was written."""
    written = {}
    with contextlib.ExitStack() as stack:
        tmp_json = stack.enter_context(atomic_file(output))
        if model is not None:
            tmp_model = stack.enter_context(atomic_file(model))
            note = {"target": result.target, "achieved_flops_ratio": result.achieved_flops_ratio,
                    "fingerprint": result.model["fingerprint"]}
            save_onnx(with_defaults(exported, result.thresholds, result.caps, note), tmp_model)
            written["model"] = str(model)
        if report is not None:
            render(result, stack.enter_context(atomic_dir(report, REPORT_DIR)))
            written["report"] = str(report)
        result.save(tmp_json)
        written["calibration"] = str(output)
    return written
