"""The three config.pbtxt of a deploy (classifier, tokenizer, ensemble), built as ModelConfig messages."""

from __future__ import annotations

import json
from typing import Any

from bfexport.names import BUDGET_INPUTS
from converters.triton.layout import LABELS_FILE, OUTPUTS, PLATFORMS, ROW_OUTPUTS
from converters.triton.options import DeployOptions, pad_buckets
from converters.triton.schema import ModelConfig, schema
from converters.triton.source import Prepared


def header(what: str) -> str:
    return f"# {what}\n# Written by `bfexport deploy`; checked offline by `bfexport deploy --check`.\n"


def _tensor(kind: str, name: str, dtype: str, dims: list[int], **fields: Any) -> Any:
    """A ModelInput (kind "input") or ModelOutput (kind "output")."""
    pb = schema()
    message = pb.ModelInput if kind == "input" else pb.ModelOutput
    return message(name=name, data_type=pb.DataType.Value(dtype), dims=dims, **fields)


def _batch_dims(dims: list[int], mbs: int) -> list[int]:
    """Triton leaves the batch dimension out of dims when max_batch_size > 0."""
    return dims if mbs > 0 else [-1, *dims]


def _ids(kind: str, mbs: int) -> list[Any]:
    return [_tensor(kind, "input_ids", "TYPE_INT64", _batch_dims([-1], mbs)),
            _tensor(kind, "attention_mask", "TYPE_INT64", _batch_dims([-1], mbs))]


def _text(mbs: int) -> Any:
    return _tensor("input", "text", "TYPE_STRING", [1] if mbs > 0 else [-1])


def _budgets(kind: str, names: tuple[str, str], layers: int, mbs: int, optional: bool = False) -> list[Any]:
    extra = {"optional": True} if optional else {}
    return [_tensor(kind, names[0], "TYPE_FP32", _batch_dims([layers], mbs), **extra),
            _tensor(kind, names[1], "TYPE_INT64", _batch_dims([layers], mbs), **extra)]


def _classifier_outputs(prepared: Prepared, mbs: int) -> list[Any]:
    cfg = prepared.exported.config
    return [_tensor("output", "logits", "TYPE_FP32", _batch_dims([cfg.n_labels], mbs), label_filename=LABELS_FILE),
            _tensor("output", "head_counts", "TYPE_INT64", _batch_dims([cfg.n_layers], mbs))]


def _finish(config: ModelConfig, params: dict[str, Any], instances: int, kind: str, batching: bool) -> ModelConfig:
    """instance_group, dynamic_batching and the string parameters (JSON for non-strings)."""
    pb = schema()
    config.instance_group.append(pb.ModelInstanceGroup(count=instances, kind=pb.ModelInstanceGroup.Kind.Value(kind)))
    if batching:
        config.dynamic_batching.SetInParent()
    for key, value in params.items():
        config.parameters[key].string_value = value if isinstance(value, str) else json.dumps(value)
    return config


def model_config(name: str, prepared: Prepared, options: DeployOptions) -> ModelConfig:
    cfg = prepared.exported.config
    mbs = options.max_batch_size
    inputs = _ids("input", mbs)
    if prepared.budget_inputs != "none":
        inputs += _budgets("input", BUDGET_INPUTS, cfg.n_layers, mbs,
                           optional=prepared.budget_inputs == "optional")
    params: dict[str, Any] = {"bfexport_flavor": prepared.exported.flavor, "bfexport_labels": list(cfg.labels),
                              "bfexport_max_length": cfg.max_length, "bfexport_budget_inputs": prepared.budget_inputs}
    if prepared.thresholds is not None:
        params["bfexport_default_budget_thresholds"] = prepared.thresholds
        params["bfexport_default_head_caps"] = prepared.caps
    config = schema().ModelConfig(name=name, platform=PLATFORMS[options.backend], max_batch_size=mbs, input=inputs,
                                  output=_classifier_outputs(prepared, mbs))
    kind = "KIND_GPU" if options.backend == "tensorrt" else "KIND_CPU"
    return _finish(config, params, options.instances, kind, options.batching)


def tokenizer_config(name: str, prepared: Prepared, options: DeployOptions) -> ModelConfig:
    cfg = prepared.exported.config
    mbs = options.max_batch_size
    inputs, outputs = [_text(mbs)], _ids("output", mbs)
    params: dict[str, Any] = {"bfexport_role": "tokenizer", "max_length": str(cfg.max_length), "unk_token": "[UNK]",
                              "n_heads": str(cfg.n_heads), "pad_buckets": pad_buckets(options, cfg.max_length)}
    if prepared.budget_inputs != "none":
        inputs += _budgets("input", BUDGET_INPUTS, cfg.n_layers, mbs, optional=True)
        outputs += _budgets("output", (ROW_OUTPUTS["budget_thresholds"], ROW_OUTPUTS["head_caps"]), cfg.n_layers, mbs)
        params["default_budget_thresholds"] = prepared.thresholds
        params["default_head_caps"] = prepared.caps
    config = schema().ModelConfig(name=name, backend="python", max_batch_size=mbs, input=inputs, output=outputs)
    return _finish(config, params, options.instances, "KIND_CPU", options.batching)


def ensemble_config(name: str, model: str, tokenizer: str, prepared: Prepared, options: DeployOptions) -> ModelConfig:
    cfg = prepared.exported.config
    mbs = options.max_batch_size
    inputs = [_text(mbs)]
    tok_in = {"text": "text"}
    tok_out = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    model_in = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if prepared.budget_inputs != "none":
        inputs += _budgets("input", BUDGET_INPUTS, cfg.n_layers, mbs, optional=True)
        for budget, row in ROW_OUTPUTS.items():
            tok_in[budget] = budget
            tok_out[row] = row
            model_in[budget] = row
    pb = schema()
    steps = [pb.ModelEnsembling.Step(model_name=tokenizer, model_version=-1, input_map=tok_in, output_map=tok_out),
             pb.ModelEnsembling.Step(model_name=model, model_version=-1, input_map=model_in,
                                     output_map={o: o for o in OUTPUTS})]
    return pb.ModelConfig(name=name, platform="ensemble", max_batch_size=mbs, input=inputs,
                          output=_classifier_outputs(prepared, mbs), ensemble_scheduling=pb.ModelEnsembling(step=steps))
