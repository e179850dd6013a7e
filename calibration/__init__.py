"""Calibration: budget thresholds (and head caps) per layer that meet a FLOP or latency target.

    from calibration import calibrate, FlopsTarget, LatencyTarget
    result = calibrate("model.onnx", "validation.jsonl.gz", FlopsTarget(0.7), samples=1000)
    result.save("calibration.json")
    write_model(result, "model.onnx", "model.calibrated.onnx")

Modules, one job each: targets (what is asked), inputs (data from any source), evaluate
(running configurations with a per-sample path cache), flops (pricing in FLOPs), latency
(runtime interface, lookup table, verification), runtimes (ort-cpu, torch-cpu,
torch-cuda, tensorrt by name), search (global sweep + per-layer local search),
report (figures), ladder (several targets in one run, sharing the setup and path cache),
outputs (writing calibration.json, the calibrated model and the report together, staged), api.
The calibration.json format itself is bfexport.calibration_result (deploy reads it too).
"""

from bfexport.calibration_result import CalibrationResult, fingerprint, with_defaults, write_model
from calibration.api import calibrate, load_model
from calibration.evaluate import Config, Evaluator
from calibration.latency import LatencyRuntime, LatencyTable, OrtCpuRuntime
from calibration.runtimes import RUNTIMES, available_runtimes, get_runtime
from calibration.search import DEFAULT_GRID, Point
from calibration.targets import FlopsTarget, LatencyTarget

__all__ = ["DEFAULT_GRID", "RUNTIMES", "CalibrationResult", "Config", "Evaluator", "FlopsTarget", "LatencyRuntime",
           "LatencyTable", "LatencyTarget", "OrtCpuRuntime", "Point", "available_runtimes", "calibrate", "fingerprint",
           "get_runtime", "load_model", "with_defaults", "write_model"]
