"""What to deploy: a checkpoint (exported here) or an exported .onnx, with its calibration applied,
made into the file Triton serves (budget initializers turned into required inputs when it batches)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from bfexport.calibration_result import CalibrationResult
from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel, load_exported
from bfexport.names import BUDGET_INPUTS
from converters.triton.calibration_file import apply_calibration
from converters.triton.options import DeployOptions


@dataclass
class Prepared:
    """The classifier file to serve and what it needs: the ONNX proto, its defaults, the tokenizer."""

    proto: onnx.ModelProto
    exported: ExportedModel  # for config / flavor / defaults
    tokenizer_json: str | None
    budget_inputs: str  # "required", "optional" or "none"
    thresholds: list[float] | None
    caps: list[int] | None
    calibration: dict[str, Any] | None
    source: dict[str, Any]


def load_source(source: Path, backend: str) -> tuple[ExportedModel, Any, str | None]:
    """(ExportedModel, torch model or None, tokenizer json or None) for a checkpoint dir or an .onnx."""
    if source.is_dir():
        from bfexport.checkpoint import TOKENIZER, load_checkpoint, load_tokenizer_json
        from converters import AdaptiveExport, DenseExport, TrtPluginExport, export_with_metadata

        model = load_checkpoint(source)
        tokenizer_json = load_tokenizer_json(source) if os.path.lexists(source / TOKENIZER) else None
        if not model.config.adaptive:
            config: Any = DenseExport()
        else:
            config = TrtPluginExport() if backend == "tensorrt" else AdaptiveExport()
        proto = export_with_metadata(model, config, tokenizer_json)
        exported = ExportedModel(source, proto, model.config, config.flavor, None, tokenizer_json)
        return exported, model, tokenizer_json
    if source.is_file():
        exported = load_exported(source)
        return exported, None, exported.tokenizer_json
    raise BfexportError(f"{source}: not found (expected a checkpoint directory or an exported .onnx file)")


def budget_inputs_required(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose budget initializers are gone, so budget_thresholds / head_caps become plain
    (required) graph inputs: what Triton needs when the model batches (see the package doc)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = [t for t in out.graph.initializer if t.name not in BUDGET_INPUTS]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


def prepare(source: str | Path, options: DeployOptions, calibration: CalibrationResult | None) -> Prepared:
    """Load or export the model, apply the calibration (options.calibration, loaded), and make the
    file Triton will serve."""
    source = Path(source)
    exported, model, tokenizer_json = load_source(source, options.backend)
    if options.backend == "onnxruntime" and exported.kind.custom_op:
        raise BfexportError(f"{source}: the trt-plugin flavor needs the BudgetedAttention custom op, which "
                            "Triton's ONNX Runtime backend does not have; deploy the adaptive export, or use "
                            "--backend tensorrt")
    applied = None
    if options.calibration is not None and calibration is not None:
        exported, applied = apply_calibration(Path(options.calibration), calibration, exported, model)
    graph_inputs = {i.name for i in exported.proto.graph.input}
    has_budgets = all(name in graph_inputs for name in BUDGET_INPUTS)
    if not has_budgets:
        mode = "none"
    elif options.backend == "tensorrt" or options.max_batch_size > 0:
        mode = "required"
    else:
        mode = "optional"
    proto = budget_inputs_required(exported.proto) if mode == "required" else exported.proto
    info = {"path": str(source), "kind": "checkpoint" if source.is_dir() else "onnx", "flavor": exported.flavor}
    return Prepared(proto, exported, tokenizer_json, mode,
                    exported.default_thresholds if has_budgets else None,
                    exported.default_caps if has_budgets else None, applied, info)
