"""`export(model, config)`: the flavor the config's type names, through the registry, checked."""

from __future__ import annotations

import onnx

from bfexport.errors import BfexportError
from bfexport.exported import set_metadata
from bfexport.flavors import MAX_OPSET, MIN_OPSET, ExportConfig
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.names import KEY_CONFIG, KEY_FLAVOR, KEY_TOKENIZER
from converters.onnx.registry import writer_for


def export(model: BudgetFormerForSequenceClassification, config: ExportConfig) -> onnx.ModelProto:
    """Export `model` as the flavor `config` names (AdaptiveExport(), DenseExport(), ...).

    Example:
        proto = export(model, TrtPluginExport(fp16=True))
        save_onnx(proto, "model.trt-plugin.onnx")
    """
    if not MIN_OPSET <= config.opset <= MAX_OPSET:
        raise BfexportError(f"opset {config.opset} is not supported (use {MIN_OPSET}..{MAX_OPSET})")
    writer = writer_for(config)
    if config.routed and not model.config.adaptive:
        raise BfexportError("this checkpoint was trained dense (every head always on): export it with --flavor dense")
    proto = writer(model, config).build()
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_with_metadata(model: BudgetFormerForSequenceClassification, config: ExportConfig,
                         tokenizer_json: str | None = None) -> onnx.ModelProto:
    """export() plus the metadata that lets the file stand alone (config, flavor, tokenizer)."""
    proto = export(model, config)
    values = {KEY_CONFIG: model.config.to_json(), KEY_FLAVOR: config.flavor, **config.metadata()}
    if tokenizer_json is not None:
        values[KEY_TOKENIZER] = tokenizer_json
    set_metadata(proto, values)
    return proto
