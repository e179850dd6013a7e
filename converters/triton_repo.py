"""A Triton Inference Server model repository for an exported BudgetFormer, and its offline check.

    deploy("checkpoint/", "models/", DeployOptions(name="sections", calibration="calibration.json"))
    report = check_repository("models/")      # schema + ONNX Runtime + tokenizer stand-in checks

Three models are written (one directory each; version 1):

  NAME/            the classifier: platform onnxruntime_onnx (1/model.onnx) or tensorrt_plan
                   (1/model.plan); inputs input_ids, attention_mask (int64) and the budget inputs
                   budget_thresholds (fp32) / head_caps (int64), one row of n_layers per sample;
                   outputs logits (labels.txt attached) and head_counts.
  NAME_tokenizer/  a Python-backend model: TYPE_STRING `text` in, input_ids / attention_mask out
                   (bfexport.data.encode's rules: no special tokens, truncation to max_length,
                   right padding within each request, an empty text -> one [UNK]); it also passes
                   the request's budget_thresholds / head_caps through, or the calibrated defaults.
  NAME_text/       an ensemble wiring text -> NAME_tokenizer -> NAME; budget_thresholds and
                   head_caps are OPTIONAL ensemble inputs (Triton supports optional ensemble
                   inputs since core PR #51, 2022; tested upstream in qa/L0_optional_input).

Why the budgets go through the tokenizer: Triton's ONNX Runtime backend serves ONNX initializers
as optional request inputs only when max_batch_size is 0; with batching it refuses to load a
config that marks any input optional ("optional input ... is not supported for models that
support batching", onnxruntime_backend src/onnxruntime.cc, ValidateInputs). So:

  max_batch_size > 0 (default, dynamic batching): model.onnx is the export with the two budget
      initializers turned into plain graph inputs, REQUIRED on NAME (a direct caller sends one
      row per sample; the calibrated defaults are in the config's parameters and README), and
      optional on NAME_text, whose tokenizer step fills in the defaults per request.
  max_batch_size = 0 (no batching): model.onnx is the export as is; the budget inputs are
      optional on NAME too (rows 1 or batch), defaulting to the values stored in the file.

TensorRT engines have no optional inputs either, so a tensorrt_plan model always takes them as
required inputs (built from the rewritten file). Exports without budget inputs (dense, static)
get a model without them.

Writing is atomic: a new repository is built beside DIR and renamed into place; into an existing
repository each model directory is moved in separately (classifier, tokenizer, then ensemble),
and a failure moves back what was moved. An existing model directory is replaced only with
force=True, and only when bfexport wrote it for the same role (its bfexport.json says so); the
source and the calibration file are never inside what is replaced. All of this is checked
before any work. Before anything is moved, the new models pass `check_repository`.

`check_repository` works offline: every config.pbtxt is parsed against Triton's own ModelConfig
schema (tritonclient's model_config_pb2; skipped, with a note, when tritonclient is absent);
each ONNX model is loaded in ONNX Runtime, checked the way Triton's backend checks it (names,
dtypes, dims, optional inputs) and run on a request shaped as the config says, with and without
each optional input; the tokenizer model's model.py must be byte for byte the one bfexport
writes (a check never runs code from the directory it checks), and bfexport's own copy is run
against a stand-in `triton_python_backend_utils` and compared with bfexport.data.encode;
ensembles are checked step by step and run end to end with those stand-ins. A directory with
no model directory holding a config.pbtxt, or with none written by bfexport, is refused. No
Triton server is involved.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import types
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bfexport.errors import BfexportError
from bfexport.files import (DIRECTORY, REGULAR, DirKind, Output, apply_umask, atomic_file, check_outputs, read_json,
                            regular_file, what_is)

BACKENDS = ("onnxruntime", "tensorrt")
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}
VERSION = "1"
TOKENIZER_SUFFIX, ENSEMBLE_SUFFIX = "_tokenizer", "_text"
BUDGET_INPUTS = ("budget_thresholds", "head_caps")
ROW_OUTPUTS = {"budget_thresholds": "row_thresholds", "head_caps": "row_caps"}  # tokenizer outputs
OUTPUTS = ("logits", "head_counts")
LABELS_FILE, META_FILE, README = "labels.txt", "bfexport.json", "README.md"
META_FORMAT = "bfexport.triton/1"
README_MARKER = "<!-- written by bfexport deploy; rewritten on each deploy -->"
ROLES = ("model", "tokenizer", "ensemble")
MODEL_DIRS = {role: DirKind(f"a Triton {role} directory", META_FILE, "role", role) for role in ROLES}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"
CHECK_TEXTS = ["A Library for PARSING json documents", "Gäme about spâce ships, and lasers!", "", "x",
               " ".join(["documentation for the network tools"] * 40)]

ONNX_TYPES = {"TYPE_BOOL": "tensor(bool)", "TYPE_UINT8": "tensor(uint8)", "TYPE_UINT16": "tensor(uint16)",
              "TYPE_UINT32": "tensor(uint32)", "TYPE_UINT64": "tensor(uint64)", "TYPE_INT8": "tensor(int8)",
              "TYPE_INT16": "tensor(int16)", "TYPE_INT32": "tensor(int32)", "TYPE_INT64": "tensor(int64)",
              "TYPE_FP16": "tensor(float16)", "TYPE_FP32": "tensor(float)", "TYPE_FP64": "tensor(double)",
              "TYPE_STRING": "tensor(string)"}
NUMPY_TYPES = {"TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_UINT16": np.uint16, "TYPE_UINT32": np.uint32,
               "TYPE_UINT64": np.uint64, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16, "TYPE_INT32": np.int32,
               "TYPE_INT64": np.int64, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
               "TYPE_STRING": np.object_}


# ---- config.pbtxt: writing and reading protobuf text format ---------------------------------

class Sym(str):
    """An enum value written bare (TYPE_INT64, KIND_CPU), not quoted."""


class Each(list[dict[str, Any]]):
    """A repeated message written as one `field { ... }` block per item (maps, input_map)."""


def _scalar(value: Any) -> str:
    if isinstance(value, Sym):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def render_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """A config dict as protobuf text format: dicts are messages, lists of dicts are `field [ {..}, ..]`,
    `Each([...])` is one `field { .. }` block per item, other lists are `[ a, b ]`."""
    pad, lines = "  " * indent, []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, Each):
            lines += [f"{pad}{key} {{\n{render_pbtxt(item, indent + 1)}{pad}}}\n" for item in value]
        elif isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{render_pbtxt(value, indent + 1)}{pad}}}\n")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"{pad}  {{\n{render_pbtxt(v, indent + 2)}{pad}  }}" for v in value)
            lines.append(f"{pad}{key} [\n{items}\n{pad}]\n")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]\n")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}\n")
    return "".join(lines)


_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[{}\[\]<>:;,]|[^\s{}\[\]<>:;,"\'#]+')


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def parse_pbtxt(text: str, source: str = "config.pbtxt") -> dict[str, list[Any]]:
    """Protobuf text format into {field: [values]} (every field a list; messages are dicts).

    Enough of the format for Triton configs (messages in {} or <>, lists, strings, numbers,
    enums, comments); it checks syntax only; `schema_errors` checks field names and types."""
    tokens = [t for t in _TOKEN.findall(text) if t.strip() and not t.startswith("#")]
    pos = 0

    def fail(what: str) -> BfexportError:
        near = " ".join(tokens[max(0, pos - 3):pos + 3])
        return BfexportError(f"{source}: {what} near {near!r}")

    def scalar() -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise fail("unexpected end")
        token = tokens[pos]
        if token[0] in "\"'":
            parts = []
            while pos < len(tokens) and tokens[pos][0] in "\"'":
                parts.append(_unescape(tokens[pos][1:-1]))
                pos += 1
            return "".join(parts)
        if token in "{}[]<>:;,":
            raise fail(f"unexpected {token!r}")
        pos += 1
        if token in ("true", "True", "t", "false", "False", "f"):
            return token in ("true", "True", "t")
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                return kind(token)
        return Sym(token)

    def message(end: str | None) -> dict[str, list[Any]]:
        nonlocal pos
        out: dict[str, list[Any]] = {}
        while True:
            if pos >= len(tokens):
                if end is None:
                    return out
                raise fail(f"missing {end!r}")
            if tokens[pos] == end:
                pos += 1
                return out
            name = tokens[pos]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
                raise fail(f"expected a field name, got {name!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            out.setdefault(name, []).extend(values())
            if pos < len(tokens) and tokens[pos] in ",;":
                pos += 1

    def values() -> list[Any]:
        nonlocal pos
        if pos >= len(tokens):
            raise fail("unexpected end")
        token = tokens[pos]
        if token in "{<":
            pos += 1
            return [message("}" if token == "{" else ">")]
        if token == "[":
            pos += 1
            items: list[Any] = []
            while pos < len(tokens) and tokens[pos] != "]":
                items.extend(values())
                if pos < len(tokens) and tokens[pos] == ",":
                    pos += 1
            if pos >= len(tokens):
                raise fail("missing ']'")
            pos += 1
            return items
        return [scalar()]

    return message(None)


def one(message: dict[str, list[Any]], key: str, default: Any = None) -> Any:
    values = message.get(key)
    return values[-1] if values else default


def config_dims(io: dict[str, list[Any]]) -> list[int]:
    return [int(d) for d in io.get("dims", [])]


def string_parameters(config: dict[str, list[Any]]) -> dict[str, str]:
    out = {}
    for entry in config.get("parameters", []):
        value = one(entry, "value", {}) or {}
        out[str(one(entry, "key", ""))] = str(one(value, "string_value", ""))
    return out


def triton_json(config: dict[str, list[Any]]) -> dict[str, Any]:
    """The config as the JSON a Python-backend model receives in args["model_config"]."""
    maps = {"parameters", "input_map", "output_map"}

    def convert(message: dict[str, list[Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, values in message.items():
            if key in maps:
                out[key] = {str(one(v, "key")): (convert(one(v, "value")) if isinstance(one(v, "value"), dict)
                                                else one(v, "value")) for v in values}
            elif key in ("input", "output", "instance_group", "step", "dims") or len(values) > 1:
                out[key] = [convert(v) if isinstance(v, dict) else _plain(v) for v in values]
            else:
                out[key] = convert(values[0]) if isinstance(values[0], dict) else _plain(values[0])
        return out

    return convert(config)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Sym) else value


def schema_module() -> tuple[Any, str | None]:
    """(ModelConfig class, None), or (None, why) when tritonclient[grpc] is not importable."""
    try:
        from tritonclient.grpc import model_config_pb2
    except Exception as e:  # ImportError, or a protobuf runtime mismatch raised at import
        return None, f"{type(e).__name__}: {e}"
    return model_config_pb2.ModelConfig, None


def schema_errors(text: str, model_config_class: Any) -> list[str]:
    """Parse with Triton's own schema: unknown fields, wrong types and bad enums are errors."""
    from google.protobuf import text_format

    try:
        text_format.Parse(text, model_config_class())
    except text_format.ParseError as e:
        return [f"not a valid Triton ModelConfig: {e}"]
    return []


# ---- what to deploy ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DeployOptions:
    """How to deploy. dynamic_batching None means on when max_batch_size > 0."""

    name: str | None = None
    backend: str = "onnxruntime"
    calibration: str | Path | None = None
    max_batch_size: int = 8
    instances: int = 1
    dynamic_batching: bool | None = None
    force: bool = False
    allow_unmet_target: bool = False  # apply a calibration whose target was not met (see load_calibration)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise BfexportError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.name is not None:
            check_name(self.name)
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) or self.max_batch_size < 0:
            raise BfexportError(f"--max-batch-size must be an integer >= 0, got {self.max_batch_size!r}")
        if isinstance(self.instances, bool) or not isinstance(self.instances, int) or self.instances < 1:
            raise BfexportError(f"--instances must be an integer >= 1, got {self.instances!r}")
        if self.dynamic_batching and self.max_batch_size == 0:
            raise BfexportError("--dynamic-batching needs --max-batch-size >= 1 (Triton batches only models "
                                "that declare a batch dimension)")
        if self.backend == "tensorrt" and self.max_batch_size == 0:
            raise BfexportError("--backend tensorrt needs --max-batch-size >= 1 (it sets the engine's batch profile)")

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0 if self.dynamic_batching is None else self.dynamic_batching


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BfexportError(f"--name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter "
                            "or digit (it becomes a directory and a Triton model name)")
    return name


def default_name(source: Path) -> str:
    stem = source.stem if source.is_file() else source.resolve().name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:80]
    return name if name and NAME_PATTERN.fullmatch(name) else "budgetformer"


@dataclass
class Prepared:
    """The classifier file to serve and what it needs: the ONNX proto, its defaults, the tokenizer."""

    proto: onnx.ModelProto
    exported: Any  # converters.onnx_io.ExportedModel, for config / flavor / defaults
    tokenizer_json: str | None
    budget_inputs: str  # "required", "optional" or "none"
    thresholds: list[float] | None
    caps: list[int] | None
    calibration: dict[str, Any] | None
    source: dict[str, Any]


def _load_source(source: Path, backend: str) -> tuple[Any, Any, Any]:
    """(ExportedModel, torch model or None, tokenizer json or None) for a checkpoint dir or an .onnx."""
    from converters.onnx_io import ExportedModel, load_exported

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
        from converters.onnx_export import flavor_name

        exported = ExportedModel(source, proto, model.config, flavor_name(config), None, tokenizer_json)
        return exported, model, tokenizer_json
    if source.is_file():
        exported = load_exported(source)
        return exported, None, exported.tokenizer_json
    raise BfexportError(f"{source}: not found (expected a checkpoint directory or an exported .onnx file)")


def load_calibration(path: str | Path, allow_unmet_target: bool = False) -> Any:
    """The calibration.json to deploy with (a CalibrationResult), strictly type-checked. One whose
    target was not met is refused unless allow_unmet_target, as `calibrate` refuses --write-model then."""
    from calibration.result import CalibrationResult

    result = CalibrationResult.load(path)
    if not result.target_met and not allow_unmet_target:
        raise BfexportError(f"{path}: this calibration did not meet its target {_target_text(result.target)} "
                            "(`bfexport calibrate` exited 1 and wrote no model); recalibrate, or pass "
                            "--allow-unmet-target to deploy it anyway")
    return result


def _target_text(target: dict[str, Any]) -> str:
    if target.get("kind") == "flops":
        return f"FLOPs ratio <= {target.get('ratio')}"
    return f"p{target.get('percentile')} <= {target.get('ms')} ms"


def _apply_calibration(path: Path, exported: Any, model: Any, allow_unmet_target: bool) -> tuple[Any, dict[str, Any]]:
    """The export with the calibrated defaults, after checking the calibration belongs to it."""
    from calibration.result import with_defaults

    result = load_calibration(path, allow_unmet_target)
    try:
        result.check_model(exported)
    except BfexportError:
        # From a checkpoint, the calibration may come from another flavor of the same weights
        # (calibrated on the adaptive file, deployed as trt-plugin): check it against that one.
        flavor = str(result.model.get("flavor", ""))
        if model is None or flavor == exported.flavor or flavor not in ("adaptive", "masked", "trt-plugin"):
            raise
        from converters import FLAVORS, export_with_metadata
        from converters.onnx_io import ExportedModel

        reference = ExportedModel(exported.path, export_with_metadata(model, FLAVORS[flavor](), None),
                                  exported.config, flavor, None, None)
        result.check_model(reference)
    note = {"target": result.target, "achieved_flops_ratio": result.achieved_flops_ratio,
            "fingerprint": result.model.get("fingerprint")}
    proto = with_defaults(exported, result.thresholds, result.caps, note)
    from converters.onnx_io import ExportedModel

    updated = ExportedModel(exported.path, proto, exported.config, exported.flavor, exported.static_heads,
                            exported.tokenizer_json)
    info = {"path": str(path), "thresholds": list(result.thresholds), "caps": list(result.caps),
            "target": result.target, "achieved_flops_ratio": result.achieved_flops_ratio,
            "target_met": result.target_met}
    return updated, info


def budget_inputs_required(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose budget initializers are gone, so budget_thresholds / head_caps become plain
    (required) graph inputs: what Triton needs when the model batches (see the module doc)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = [t for t in out.graph.initializer if t.name not in BUDGET_INPUTS]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


def prepare(source: str | Path, options: DeployOptions) -> Prepared:
    """Load or export the model, apply the calibration, and make the file Triton will serve."""
    source = Path(source)
    exported, model, tokenizer_json = _load_source(source, options.backend)
    if options.backend == "onnxruntime" and exported.flavor == "trt-plugin":
        raise BfexportError(f"{source}: the trt-plugin flavor needs the BudgetedAttention custom op, which "
                            "Triton's ONNX Runtime backend does not have; deploy the adaptive export, or use "
                            "--backend tensorrt")
    calibration = None
    if options.calibration is not None:
        exported, calibration = _apply_calibration(Path(options.calibration), exported, model,
                                                   options.allow_unmet_target)
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
                    exported.default_caps if has_budgets else None, calibration, info)


# ---- the three configs -------------------------------------------------------------------------

def _io(name: str, dtype: str, dims: list[int], *, optional: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "data_type": Sym(dtype), "dims": dims}
    if optional:
        out["optional"] = True
    out.update(extra)
    return out


def _params(values: dict[str, Any]) -> Each:
    return Each({"key": k, "value": {"string_value": v if isinstance(v, str) else json.dumps(v)}}
                for k, v in values.items())


def _batch_dims(dims: list[int], mbs: int) -> list[int]:
    """Triton leaves the batch dimension out of dims when max_batch_size > 0."""
    return dims if mbs > 0 else [-1, *dims]


def model_config(name: str, prepared: Prepared, options: DeployOptions) -> dict[str, Any]:
    cfg = prepared.exported.config
    mbs, L = options.max_batch_size, cfg.n_layers
    inputs = [_io("input_ids", "TYPE_INT64", _batch_dims([-1], mbs)),
              _io("attention_mask", "TYPE_INT64", _batch_dims([-1], mbs))]
    if prepared.budget_inputs != "none":
        optional = prepared.budget_inputs == "optional"
        inputs += [_io("budget_thresholds", "TYPE_FP32", _batch_dims([L], mbs), optional=optional),
                   _io("head_caps", "TYPE_INT64", _batch_dims([L], mbs), optional=optional)]
    outputs = [_io("logits", "TYPE_FP32", _batch_dims([cfg.n_labels], mbs), label_filename=LABELS_FILE),
               _io("head_counts", "TYPE_INT64", _batch_dims([L], mbs))]
    kind = "KIND_GPU" if options.backend == "tensorrt" else "KIND_CPU"
    params: dict[str, Any] = {"bfexport_flavor": prepared.exported.flavor, "bfexport_labels": list(cfg.labels),
                              "bfexport_max_length": cfg.max_length, "bfexport_budget_inputs": prepared.budget_inputs}
    if prepared.thresholds is not None:
        params["bfexport_default_budget_thresholds"] = prepared.thresholds
        params["bfexport_default_head_caps"] = prepared.caps
    return {"name": name, "platform": PLATFORMS[options.backend], "max_batch_size": mbs, "input": inputs,
            "output": outputs, "instance_group": [{"count": options.instances, "kind": Sym(kind)}],
            "dynamic_batching": {} if options.batching else None, "parameters": _params(params)}


def tokenizer_config(name: str, prepared: Prepared, options: DeployOptions) -> dict[str, Any]:
    cfg = prepared.exported.config
    mbs, L = options.max_batch_size, cfg.n_layers
    inputs = [_io("text", "TYPE_STRING", [1] if mbs > 0 else [-1])]
    outputs = [_io("input_ids", "TYPE_INT64", _batch_dims([-1], mbs)),
               _io("attention_mask", "TYPE_INT64", _batch_dims([-1], mbs))]
    params: dict[str, Any] = {"bfexport_role": "tokenizer", "max_length": str(cfg.max_length), "unk_token": "[UNK]",
                              "n_heads": str(cfg.n_heads)}
    if prepared.budget_inputs != "none":
        inputs += [_io("budget_thresholds", "TYPE_FP32", _batch_dims([L], mbs), optional=True),
                   _io("head_caps", "TYPE_INT64", _batch_dims([L], mbs), optional=True)]
        outputs += [_io(ROW_OUTPUTS["budget_thresholds"], "TYPE_FP32", _batch_dims([L], mbs)),
                    _io(ROW_OUTPUTS["head_caps"], "TYPE_INT64", _batch_dims([L], mbs))]
        params["default_budget_thresholds"] = prepared.thresholds
        params["default_head_caps"] = prepared.caps
    return {"name": name, "backend": "python", "max_batch_size": mbs, "input": inputs, "output": outputs,
            "instance_group": [{"count": options.instances, "kind": Sym("KIND_CPU")}],
            "dynamic_batching": {} if options.batching else None, "parameters": _params(params)}


def ensemble_config(name: str, model: str, tokenizer: str, prepared: Prepared,
                    options: DeployOptions) -> dict[str, Any]:
    cfg = prepared.exported.config
    mbs, L = options.max_batch_size, cfg.n_layers
    inputs = [_io("text", "TYPE_STRING", [1] if mbs > 0 else [-1])]
    tok_in = Each([{"key": "text", "value": "text"}])
    tok_out = Each([{"key": "input_ids", "value": "input_ids"}, {"key": "attention_mask", "value": "attention_mask"}])
    model_in = Each([{"key": "input_ids", "value": "input_ids"}, {"key": "attention_mask", "value": "attention_mask"}])
    if prepared.budget_inputs != "none":
        inputs += [_io("budget_thresholds", "TYPE_FP32", _batch_dims([L], mbs), optional=True),
                   _io("head_caps", "TYPE_INT64", _batch_dims([L], mbs), optional=True)]
        for budget, row in ROW_OUTPUTS.items():
            tok_in.append({"key": budget, "value": budget})
            tok_out.append({"key": row, "value": row})
            model_in.append({"key": budget, "value": row})
    outputs = [_io("logits", "TYPE_FP32", _batch_dims([cfg.n_labels], mbs), label_filename=LABELS_FILE),
               _io("head_counts", "TYPE_INT64", _batch_dims([L], mbs))]
    model_out = Each([{"key": o, "value": o} for o in OUTPUTS])
    steps = [{"model_name": tokenizer, "model_version": -1, "input_map": tok_in, "output_map": tok_out},
             {"model_name": model, "model_version": -1, "input_map": model_in, "output_map": model_out}]
    return {"name": name, "platform": "ensemble", "max_batch_size": mbs, "input": inputs, "output": outputs,
            "ensemble_scheduling": {"step": steps}}


def _header(what: str) -> str:
    return f"# {what}\n# Written by `bfexport deploy`; checked offline by `bfexport deploy --check`.\n"


# ---- the tokenizer model (runs inside Triton's Python backend; imports no bfexport) -------------

TOKENIZER_MODEL_PY = '''"""Triton Python-backend tokenizer for a BudgetFormer classifier (written by bfexport deploy).

text (TYPE_STRING) -> input_ids, attention_mask (int64), with bfexport.data.encode's rules: the
WordPiece tokenizer in tokenizer.json beside this file, no special tokens, truncation to
max_length, right padding with 0 to the longest text of each request, and an empty text as a
single [UNK]. Optional budget_thresholds / head_caps inputs (one row per text, or one row for the
request) come out as row_thresholds / row_caps with one row per text; absent, the calibrated
defaults from the config's parameters are used. Needs `pip install tokenizers` where Triton runs.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

BUDGETS = (("budget_thresholds", "row_thresholds", np.float32), ("head_caps", "row_caps", np.int64))
DTYPES = {"TYPE_INT64": np.int64, "TYPE_FP32": np.float32}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = int(params["max_length"])
        self.n_heads = int(params["n_heads"])
        self.unk_id = self.tokenizer.token_to_id(params.get("unk_token", "[UNK]"))
        if self.unk_id is None:
            raise ValueError("tokenizer.json has no " + params.get("unk_token", "[UNK]") + " token")
        self.defaults = {}
        for name, out, dtype in BUDGETS:
            if "default_" + name in params:
                self.defaults[name] = np.asarray(json.loads(params["default_" + name]), dtype=dtype).reshape(1, -1)
        for name in ["input_ids", "attention_mask"] + [out for name, out, _ in BUDGETS if name in self.defaults]:
            output = pb_utils.get_output_config_by_name(config, name)
            if output is None or DTYPES.get(output["data_type"]) is None:
                raise ValueError("config.pbtxt: output " + name + " missing or not int64 / fp32")

    def execute(self, requests):
        texts, spans = [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            spans.append((len(texts), len(raw)))
            texts.extend(t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in raw)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
        rows = [e.ids[: self.max_length] or [self.unk_id] for e in encodings]
        responses = []
        for request, (start, count) in zip(requests, spans):
            try:
                tensors = self._outputs(request, rows[start:start + count])
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except ValueError as error:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
        return responses

    def _outputs(self, request, rows):
        width = max((len(row) for row in rows), default=0)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        tensors = [pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)]
        for name, out, dtype in BUDGETS:
            if name in self.defaults:
                tensors.append(pb_utils.Tensor(out, self._rows(request, name, dtype, len(rows))))
        return tensors

    def _rows(self, request, name, dtype, count):
        default = self.defaults[name]
        given = pb_utils.get_input_tensor_by_name(request, name)
        values = default if given is None else np.asarray(given.as_numpy())
        if values.ndim != 2 or values.shape[1] != default.shape[1] or values.shape[0] not in (1, count):
            raise ValueError(name + ": expected " + str(default.shape[1]) + " values per text (one row per text), "
                             "got shape " + str(list(values.shape)))
        if name == "budget_thresholds" and not np.all((values > 0) & (values <= 1)):
            raise ValueError("budget_thresholds must lie in (0, 1]")
        if name == "head_caps" and not np.all((values >= 1) & (values <= self.n_heads)):
            raise ValueError("head_caps must lie in [1, " + str(self.n_heads) + "]")
        return np.ascontiguousarray(np.broadcast_to(values.astype(dtype), (count, default.shape[1])))
'''


# ---- READMEs -----------------------------------------------------------------------------------

def model_readme(name: str, prepared: Prepared, options: DeployOptions, tokenizer: str | None,
                 ensemble: str | None) -> str:
    cfg = prepared.exported.config
    L, mbs = cfg.n_layers, options.max_batch_size
    platform = PLATFORMS[options.backend]
    lines = [f"# {name}: BudgetFormer text classifier for Triton", "",
             f"Written by `bfexport deploy` from `{prepared.source['path']}` (flavor {prepared.exported.flavor}, "
             f"platform `{platform}`, max_batch_size {mbs}, dynamic batching "
             f"{'on' if options.batching else 'off'}, {options.instances} instance(s)).", "",
             f"Labels (logits columns, also in `{LABELS_FILE}`): {', '.join(cfg.labels)}.", ""]
    if ensemble:
        lines += [f"## Text in: `{ensemble}`", "",
                  f"Send `text` (TYPE_STRING, BYTES on the wire, {'shape [batch, 1]' if mbs else 'shape [batch]'}). "
                  f"`{tokenizer}` tokenizes it the way bfexport does (no special tokens, truncation to "
                  f"{cfg.max_length} tokens, right padding within the request, an empty text as one [UNK]); "
                  f"`{name}` classifies. Outputs: `logits` [batch, {cfg.n_labels}] and `head_counts` "
                  f"[batch, {L}] (the heads each layer ran for each text).", "",
                  "Each request is padded to its own longest text, and Triton's dynamic batcher only merges "
                  "requests whose inputs have the same shape, so requests of different padded lengths run as "
                  "separate batches on the classifier; send several texts per request to batch them.", "",
                  f"`{tokenizer}` needs the `tokenizers` package in Triton's Python environment (tokenizer.json "
                  f"was written with tokenizers {_tokenizer_version()}; use that version or a later one).", ""]
    if prepared.budget_inputs != "none":
        lines += ["## Budgets per request", "",
                  f"`budget_thresholds` (FP32) and `head_caps` (INT64) hold {L} values per text (one per layer); "
                  "a lower threshold or cap runs fewer heads: faster, usually a little less accurate.",
                  f"Defaults{' (calibrated)' if prepared.calibration else ''}: budget_thresholds "
                  f"{prepared.thresholds}, head_caps {prepared.caps}.", ""]
        if ensemble:
            lines += [f"- `{ensemble}`: both are OPTIONAL inputs, shape [batch, {L}]"
                      + (" (one row per text)" if mbs else " (one row for all texts, or one per text)")
                      + "; left out, the defaults apply.", ""]
        if prepared.budget_inputs == "required":
            lines += [f"- `{name}` (ids in): both are REQUIRED inputs, shape [batch, {L}]. Triton's "
                      + ("TensorRT backend has no optional inputs"
                         if options.backend == "tensorrt" else
                         "ONNX Runtime backend refuses optional inputs on a model that batches")
                      + "; send the defaults above when you have no budget of your own (they are also in "
                      "the model's config `parameters`). Deploy with `--max-batch-size 0` to make them "
                      "optional on the ONNX Runtime model (no dynamic batching then).", ""]
        else:
            lines += [f"- `{name}` (ids in): both are OPTIONAL inputs, shape [1 or batch, {L}]; left out, the "
                      "defaults stored in model.onnx apply.", ""]
        lines += ["The adaptive graph runs, for each layer, as many heads as the batch's largest budget needs "
                  "(each text still keeps only its own heads), so requests with small budgets gain most when "
                  "they are not batched with large ones.", ""]
    lines += ["## Client", "", "`examples/triton_client.py` in the bfexport repository sends text or ids with a "
              "budget, e.g. `python examples/triton_client.py --model " + (ensemble or name)
              + " --thresholds 0.5 \"some text\"`.", ""]
    return "\n".join(lines)


def repo_readme(repo_models: list[dict[str, Any]]) -> str:
    models = "\n".join(f"- `{m['name']}` ({m['backend']}): `{m['name']}/README.md`"
                       + (f", text in via `{m['ensemble']}`" if m.get("ensemble") else "") for m in repo_models)
    gpu = any(m["backend"] == "tensorrt" for m in repo_models)
    return f"""{README_MARKER}
# Triton model repository (bfexport)

BudgetFormer classifiers deployed by `bfexport deploy`:

{models}

## Start Triton

With the official container (it has the ONNX Runtime, TensorRT and Python backends). The
tokenizer models need the `tokenizers` package, which the image does not have:

```
cat > Dockerfile <<'EOF'
FROM {TRITON_IMAGE}
RUN pip install tokenizers
EOF
docker build -t tritonserver-bfexport .
docker run --rm {'--gpus all ' if gpu else ''}-p 8000:8000 -p 8001:8001 -p 8002:8002 \\
    -v "$PWD":/models tritonserver-bfexport tritonserver --model-repository=/models
```

Run it from this directory (or change the `-v` path). `<yy.mm>` is a Triton release: optional
ensemble inputs arrived in 2022 (server core PR #51), so use a recent one. Without Docker:
`tritonserver --model-repository=/path/to/this/directory`. Check: `curl localhost:8000/v2/health/ready`.

## Clients and budgets

Each model's README says which inputs it takes. In short: send `text` to `<name>_text`, and
optionally `budget_thresholds` (FP32) / `head_caps` (INT64) with one row of n_layers values per
text to trade accuracy for speed per request; `examples/triton_client.py` in the bfexport
repository does both, over HTTP (`pip install 'tritonclient[http]'`).

## Updating

`bfexport deploy SOURCE --repo <this directory> --name NAME --force` builds the new model
directories beside this one, checks them, then swaps them in one directory at a time (classifier,
tokenizer, ensemble last); other models are left alone. A server started with
`--model-control-mode=poll` picks the change up; with `explicit`, reload the models through the
repository API.

## TensorRT

A `tensorrt_plan` model built from the trt-plugin export embeds the budgeted-attention plugin as
an AOT (ahead-of-time compiled) TensorRT plugin, so Triton should need no `LD_PRELOAD` and no
`--backend-config=tensorrt,plugins=...` for it. UNVERIFIED: no engine has been built or served in
bfexport's development. The engine only runs on the GPU model and TensorRT version it was built
with: build it (`bfexport deploy --backend tensorrt`) where the server runs, with the TensorRT of
the Triton release you use.

## Checking offline

`bfexport deploy --check <this directory>` parses every config.pbtxt against Triton's ModelConfig
schema (needs `pip install 'bfexport[deploy]'`), runs each ONNX model in ONNX Runtime on requests
shaped as its config says, checks that each tokenizer's model.py is byte for byte the one bfexport
writes (it never runs code from the directory it checks) and runs bfexport's own copy against a
stand-in Python backend.
"""


# ---- writing the repository ---------------------------------------------------------------------

@dataclass
class DeployResult:
    repo: str
    models: dict[str, str]
    backend: str
    platform: str
    max_batch_size: int
    dynamic_batching: bool
    instances: int
    budget_inputs: str
    default_thresholds: list[float] | None
    default_caps: list[int] | None
    calibration: dict[str, Any] | None
    replaced: list[str]
    check: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tokenizer_version() -> str:
    import tokenizers

    return str(getattr(tokenizers, "__version__", "?"))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _build(staging: Path, name: str, prepared: Prepared, options: DeployOptions, notes: list[str]) -> dict[str, str]:
    """Write the model directories under `staging`; returns {role: model name}."""
    cfg = prepared.exported.config
    models = {"model": name}
    meta = {"format": META_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": prepared.source, "backend": options.backend, "max_batch_size": options.max_batch_size,
            "budget_inputs": prepared.budget_inputs, "default_thresholds": prepared.thresholds,
            "default_caps": prepared.caps, "calibration": prepared.calibration, "labels": list(cfg.labels),
            "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "max_length": cfg.max_length}
    model_dir = staging / name
    version = model_dir / VERSION
    version.mkdir(parents=True)
    if options.backend == "onnxruntime":
        (version / MODEL_FILES["onnxruntime"]).write_bytes(prepared.proto.SerializeToString(deterministic=True))
    else:
        from converters.tensorrt import build_engine

        build_onnx = staging / ".build" / "model.onnx"
        build_onnx.parent.mkdir()
        build_onnx.write_bytes(prepared.proto.SerializeToString(deterministic=True))
        build_engine(build_onnx, version / MODEL_FILES["tensorrt"], max_batch=options.max_batch_size,
                     opt_batch=min(8, options.max_batch_size), opt_seq=min(128, cfg.max_length),
                     max_seq=cfg.max_length)
        shutil.rmtree(build_onnx.parent)
    _write_text(model_dir / LABELS_FILE, "".join(f"{label}\n" for label in cfg.labels))
    tokenizer = ensemble = None
    if prepared.tokenizer_json is not None:
        tokenizer, ensemble = name + TOKENIZER_SUFFIX, name + ENSEMBLE_SUFFIX
        models.update(tokenizer=tokenizer, ensemble=ensemble)
    else:
        notes.append("the model carries no tokenizer: only the ids-in model was written (no text ensemble)")
    _write_text(model_dir / "config.pbtxt", _header(f"{name}: BudgetFormer classifier, token ids in")
                + render_pbtxt(model_config(name, prepared, options)))
    _write_text(model_dir / META_FILE, json.dumps({**meta, "role": "model", "models": models}, indent=2) + "\n")
    _write_text(model_dir / README, model_readme(name, prepared, options, tokenizer, ensemble))
    if tokenizer and ensemble:
        tok_dir = staging / tokenizer
        _write_text(tok_dir / VERSION / "model.py", TOKENIZER_MODEL_PY)
        _write_text(tok_dir / VERSION / "tokenizer.json", prepared.tokenizer_json or "")
        _write_text(tok_dir / "config.pbtxt", _header(f"{tokenizer}: text -> token ids for {name} (Python backend)")
                    + render_pbtxt(tokenizer_config(tokenizer, prepared, options)))
        _write_text(tok_dir / META_FILE, json.dumps({**meta, "role": "tokenizer", "models": models,
                                                     "tokenizers_version": _tokenizer_version()}, indent=2) + "\n")
        ens_dir = staging / ensemble
        (ens_dir / VERSION).mkdir(parents=True)  # Triton wants a version directory, even an empty one
        _write_text(ens_dir / LABELS_FILE, "".join(f"{label}\n" for label in cfg.labels))
        _write_text(ens_dir / "config.pbtxt", _header(f"{ensemble}: text in, {name} out (ensemble)")
                    + render_pbtxt(ensemble_config(ensemble, name, tokenizer, prepared, options)))
        _write_text(ens_dir / META_FILE, json.dumps({**meta, "role": "ensemble", "models": models}, indent=2) + "\n")
    return models


def _repo_models(repo: Path, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bfexport classifiers in `repo` (plus `extra`), for the repository README."""
    found = {m["name"]: m for m in extra}
    if repo.is_dir():
        for meta_path in sorted(repo.glob(f"*/{META_FILE}")):
            with contextlib.suppress(OSError, BfexportError, KeyError, TypeError, AttributeError):
                meta = read_json(meta_path)
                if meta.get("role") == "model" and meta_path.parent.name not in found:
                    found[meta_path.parent.name] = {"name": meta_path.parent.name, "backend": meta["backend"],
                                                    "ensemble": meta["models"].get("ensemble")}
    return [found[k] for k in sorted(found)]


def deploy(source: str | Path, repo: str | Path, options: DeployOptions | None = None) -> DeployResult:
    """Write a Triton model repository for `source` (a checkpoint directory or an exported .onnx).

    Args:
        source: checkpoint directory (exported here: adaptive flavor for onnxruntime, trt-plugin
            for tensorrt; dense checkpoints as dense) or a file written by `bfexport convert`.
        repo: the model repository directory: created if absent; an existing one keeps its other
            models.
        options: name, backend, calibration, batching and instances (DeployOptions).

    Returns:
        DeployResult: the models written, their budget inputs, the offline check's report.

    Nothing is written when anything fails (bad option, missing calibration, no TensorRT, a
    model directory that exists without force or that bfexport did not write for that role, a
    model directory holding the source, a README.md that is not a regular file, a failed check);
    all but the last are found before any work.

    Example:
        deploy("ckpt", "models", DeployOptions(name="sections", max_batch_size=16))
    """
    options = options or DeployOptions()
    source, repo = Path(source), Path(repo)
    if not source.exists():
        raise BfexportError(f"{source}: not found (expected a checkpoint directory or an exported .onnx file)")
    if repo.exists() and not repo.is_dir():
        raise BfexportError(f"{repo}: exists and is not a directory (--repo must be a model repository directory)")
    parent = repo.resolve().parent
    if not parent.is_dir():
        raise BfexportError(f"{repo}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (repo.is_dir() and not os.access(repo, os.W_OK)):
        raise BfexportError(f"{repo}: not writable")
    name = options.name or default_name(source)
    check_name(name)
    if options.backend == "tensorrt":
        from converters.tensorrt import import_tensorrt

        import_tensorrt()  # the clear install error, before any work
    if options.calibration is not None:
        regular_file(options.calibration, "calibration file not found")
        load_calibration(options.calibration, options.allow_unmet_target)  # a bad one is refused before any work
    dirs = dict(zip(ROLES, (name, name + TOKENIZER_SUFFIX, name + ENSEMBLE_SUFFIX)))
    outputs = [Output(repo / d, kind=MODEL_DIRS[role], make_parents=True) for role, d in dirs.items()]
    inputs = {"SOURCE": source, "--calibration": options.calibration}
    check_outputs(outputs, inputs, force=options.force)
    if os.path.lexists(repo / README):
        regular_file(repo / README)  # a README.md directory or pipe would fail after the models are in
    if repo.is_dir() and os.stat(repo).st_dev != os.stat(parent).st_dev:
        raise BfexportError(f"{repo}: is a mount point (another filesystem than {parent}), so the new model "
                            "directories cannot be moved in atomically; deploy to a directory beside it and move them")

    prepared = prepare(source, options)
    notes: list[str] = []
    if prepared.calibration is not None and not prepared.calibration["target_met"]:
        notes.append(f"{options.calibration} did not meet its target {_target_text(prepared.calibration['target'])}: "
                     "deployed anyway (--allow-unmet-target)")
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".deploy-tmp", dir=parent))
    try:
        models = _build(staging, name, prepared, options, notes)
        written = list(models.values())
        report = check_repository(staging, models=written)
        if not report.ok:
            raise BfexportError("the new models fail the offline check, nothing was written: "
                                + "; ".join(report.errors()[:3]))
        entry = {"name": name, "backend": options.backend, "ensemble": models.get("ensemble")}
        apply_umask(staging)  # mkdtemp's 0700 would hide the repository from a server running as another user
        if not repo.exists():
            _write_text(staging / README, repo_readme([entry]))
            os.replace(staging, repo)
            replaced: list[str] = []
        else:
            check_outputs(outputs, inputs, force=options.force)  # again: something may have appeared meanwhile
            replaced = _install(staging, repo, written)
            readme = repo / README
            if not readme.exists() or readme.read_text(errors="replace").startswith(README_MARKER):
                with atomic_file(readme) as tmp:
                    tmp.write_text(repo_readme(_repo_models(repo, [entry])), encoding="utf-8")
            else:
                notes.append(f"{readme} is not bfexport's: left as it is")
    except OSError as e:  # disk full, quota: the repository is as it was
        raise BfexportError(f"{repo}: could not write the repository ({e.strerror or e})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not report.schema_checked:
        notes.append(f"config.pbtxt schema check skipped: {report.schema_skipped}")
    check = report.to_dict()
    check["repo"] = str(repo)
    return DeployResult(str(repo), models, options.backend, PLATFORMS[options.backend], options.max_batch_size,
                        options.batching, options.instances, prepared.budget_inputs, prepared.thresholds,
                        prepared.caps, prepared.calibration, replaced, check, notes)


def _install(staging: Path, repo: Path, names: list[str]) -> list[str]:
    """Move staging/<name> to repo/<name> one directory at a time (the ensemble, listed last,
    appears after the models it uses), moving aside what check_outputs allowed to be replaced;
    on failure, move back what was moved and restore what was replaced. Returns the names that
    replaced an existing directory."""
    backups = staging / ".replaced"
    backups.mkdir()
    moved: list[str] = []
    replaced: list[str] = []
    try:
        for name in names:
            target = repo / name
            if target.exists() or target.is_symlink():
                os.replace(target, backups / name)
                replaced.append(name)
            os.replace(staging / name, target)
            moved.append(name)
    except BaseException:
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(repo / name, staging / name)
        for name in replaced:
            with contextlib.suppress(OSError):
                if not (repo / name).exists():
                    os.replace(backups / name, repo / name)
        raise
    return replaced


# ---- the offline check --------------------------------------------------------------------------

@dataclass
class ModelCheck:
    name: str
    kind: str = "?"
    passed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class RepoCheck:
    repo: str
    models: list[ModelCheck]
    schema_checked: bool
    schema_skipped: str | None

    @property
    def ok(self) -> bool:
        return not self.errors()

    def errors(self) -> list[str]:
        return [f"{m.name}: {e}" for m in self.models for e in m.errors]

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "ok": self.ok, "schema_checked": self.schema_checked,
                "schema_skipped": self.schema_skipped, "models": [asdict(m) for m in self.models]}


@dataclass
class _Model:
    name: str
    path: Path
    text: str
    config: dict[str, list[Any]]
    meta: dict[str, Any]

    @property
    def mbs(self) -> int:
        return int(one(self.config, "max_batch_size", 0) or 0)

    def ios(self, key: str) -> dict[str, dict[str, list[Any]]]:
        return {str(one(io, "name")): io for io in self.config.get(key, [])}

    def version_dirs(self) -> list[Path]:
        versions = (p for p in self.path.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))
        return sorted(versions, key=lambda p: int(p.name))


def _read_models(repo: Path, names: list[str] | None, checks: dict[str, ModelCheck]) -> dict[str, _Model]:
    models = {}
    dirs = [repo / n for n in names] if names is not None else sorted(
        p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    for path in dirs:
        check = checks.setdefault(path.name, ModelCheck(path.name))
        special = [f"{p.relative_to(path)} is {what}" for p in sorted(path.rglob("*"))
                   if (what := what_is(p)) not in (REGULAR, DIRECTORY)]
        if special:  # a named pipe would block the check forever, a device never ends: opened by no step
            check.errors.append(f"not a regular file, so not checked: {'; '.join(special[:5])}")
            continue
        config_path = path / "config.pbtxt"
        if not config_path.is_file():
            check.notes.append("no config.pbtxt (Triton may complete one from the model file): not checked")
            continue
        text = config_path.read_text(encoding="utf-8", errors="replace")
        try:
            config = parse_pbtxt(text, str(config_path))
        except BfexportError as e:
            check.errors.append(str(e))
            continue
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, BfexportError):
            loaded = read_json(path / META_FILE)
            meta = loaded if isinstance(loaded, dict) and loaded.get("format") == META_FORMAT else {}
        models[path.name] = _Model(path.name, path, text, config, meta)
    return models


def check_repository(repo: str | Path, *, models: list[str] | None = None) -> RepoCheck:
    """Check a Triton model repository offline (see the module doc); `models` limits it to those
    model directories. Problems are reported, not raised, except a directory that is not a
    Triton repository holding a model bfexport wrote (BfexportError)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise BfexportError(f"{repo}: not a directory (expected a Triton model repository)")
    config_class, why = schema_module()
    checks: dict[str, ModelCheck] = {}
    found = _read_models(repo, models, checks)
    if not found:
        raise BfexportError(f"{repo}: not a Triton model repository: no model directory with a config.pbtxt"
                            + (f" (directories: {', '.join(sorted(checks))})" if checks else ""))
    if not any(m.meta for m in found.values()):
        raise BfexportError(f"{repo}: no model written by bfexport deploy (none has a {META_FILE}); "
                            f"found {', '.join(sorted(found))}")
    sessions: dict[Path, Any] = {}
    for name, model in found.items():
        check = checks[name]
        check.kind = str(one(model.config, "platform", "") or one(model.config, "backend", "") or "?")
        if config_class is not None:
            errors = schema_errors(model.text, config_class)
            check.errors += errors
            if not errors:
                check.passed.append("config.pbtxt parses as a Triton ModelConfig")
        config_name = one(model.config, "name")
        if config_name is not None and str(config_name) != name:
            check.errors.append(f"config name {config_name!r} differs from the directory name {name!r}")
        try:
            if check.kind in ("onnxruntime_onnx", "onnxruntime"):
                _check_onnx(model, check, sessions)
            elif check.kind in ("tensorrt_plan", "tensorrt"):
                _check_plan(model, check)
            elif check.kind == "python":
                _check_python(model, check)
            elif check.kind == "ensemble":
                _check_ensemble(model, found, check, sessions)
            else:
                check.notes.append(f"{check.kind} models are not checked beyond the schema")
        except Exception as e:  # noqa: BLE001 - a broken model is a finding, not a crash
            check.errors.append(f"check failed: {type(e).__name__}: {e}")
    return RepoCheck(str(repo), [checks[k] for k in sorted(checks)], config_class is not None,
                     None if config_class is not None else
                     f"tritonclient is not installed (pip install 'bfexport[deploy]'): {why}")


def _model_file(model: _Model, check: ModelCheck, default: str) -> Path | None:
    versions = model.version_dirs()
    if not versions:
        check.errors.append("no version directory (e.g. 1/)")
        return None
    filename = str(one(model.config, "default_model_filename", default))
    path = versions[-1] / filename
    if not path.is_file():
        check.errors.append(f"{path.relative_to(model.path)} missing")
        return None
    return path


def _session(path: Path, sessions: dict[Path, Any]) -> Any:
    if path not in sessions:
        import onnxruntime as ort

        from bfexport.runtime import session_options

        sessions[path] = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    return sessions[path]


def _dims_match(model_dims: list[Any], expected: list[int]) -> bool:
    """Triton's comparison: same rank; a fixed model dim must equal the config's."""
    if len(model_dims) != len(expected):
        return False
    return all(not isinstance(m, int) or m < 0 or m == e for m, e in zip(model_dims, expected))


def _full_dims(io: dict[str, list[Any]], mbs: int) -> list[int]:
    return ([-1] if mbs > 0 else []) + config_dims(io)


def _labels_file(model: _Model, check: ModelCheck, n_labels: int | None) -> None:
    for io in model.config.get("output", []):
        label_file = one(io, "label_filename")
        if label_file is None:
            continue
        path = model.path / str(label_file)
        if not path.is_file():
            check.errors.append(f"output {one(io, 'name')}: label file {label_file} missing")
        elif n_labels is not None and len(path.read_text(encoding="utf-8").splitlines()) != n_labels:
            check.errors.append(f"{label_file}: expected {n_labels} labels")


def _sample_inputs(model: _Model, session: Any, batch: int, seq: int) -> dict[str, np.ndarray]:
    """One request per the config: input_ids from the sample texts when the file carries a tokenizer,
    attention_mask ones, the budget inputs at the file's defaults (one row per sample), else zeros."""
    feeds: dict[str, np.ndarray] = {}
    defaults = _onnx_defaults(session)
    for name, io in model.ios("input").items():
        dtype = NUMPY_TYPES.get(str(one(io, "data_type")), np.float32)
        dims = _full_dims(io, model.mbs)
        shape = [batch if i == 0 else (seq if d < 0 else d) for i, d in enumerate(dims)] if dims else []
        if name == "attention_mask":
            feeds[name] = np.ones(shape, dtype=dtype)
        elif name in defaults and shape and shape[-1] == defaults[name].shape[-1]:
            feeds[name] = np.ascontiguousarray(np.broadcast_to(defaults[name].astype(dtype), shape))
        elif name == "input_ids":
            feeds[name] = (np.arange(int(np.prod(shape))).reshape(shape) % 7 + 2).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds


def _onnx_defaults(session: Any) -> dict[str, np.ndarray]:
    """Budget defaults: the file's initializers, or its bfexport config metadata when they were
    turned into plain inputs."""
    out: dict[str, np.ndarray] = {}
    meta = session.get_modelmeta().custom_metadata_map
    with contextlib.suppress(KeyError, ValueError, TypeError):
        config = json.loads(meta["bfexport.config"])
        out["budget_thresholds"] = np.asarray([config["budget_thresholds"]], dtype=np.float32)
        out["head_caps"] = np.asarray([config["head_caps"]], dtype=np.int64)
    return out


def _check_onnx(model: _Model, check: ModelCheck, sessions: dict[Path, Any]) -> None:
    path = _model_file(model, check, "model.onnx")
    if path is None:
        return
    try:
        session = _session(path, sessions)
    except Exception as e:  # noqa: BLE001
        check.errors.append(f"ONNX Runtime cannot load {path.name}: {type(e).__name__}: {str(e).splitlines()[0]}")
        return
    mbs = model.mbs
    plain = {i.name: i for i in session.get_inputs()}
    overridable = {i.name: i for i in session.get_overridable_initializers()}
    outputs = {o.name: o for o in session.get_outputs()}
    inputs = model.ios("input")
    errors = check.errors
    required = [n for n, io in inputs.items() if not one(io, "optional", False)]
    if sorted(required) != sorted(plain):
        errors.append(f"the config's required inputs {sorted(required)} must be exactly the model's inputs "
                      f"{sorted(plain)} (Triton's ONNX Runtime backend counts them)")
    for name, io in inputs.items():
        optional = bool(one(io, "optional", False))
        info = plain.get(name) or overridable.get(name)
        if info is None:
            errors.append(f"input {name}: not an input of {path.name}")
            continue
        if optional and name not in overridable:
            errors.append(f"input {name}: optional in the config but required by the model (no initializer)")
        if optional and mbs > 0:
            errors.append(f"input {name}: Triton's ONNX Runtime backend refuses optional inputs when "
                          "max_batch_size > 0")
        _compare_io("input", name, io, info, mbs, errors)
    for name, io in model.ios("output").items():
        if name not in outputs:
            errors.append(f"output {name}: not an output of {path.name}")
            continue
        _compare_io("output", name, io, outputs[name], mbs, errors)
    n_labels = None
    if "logits" in outputs and isinstance(outputs["logits"].shape[-1], int):
        n_labels = outputs["logits"].shape[-1]
    _labels_file(model, check, n_labels)
    if errors:
        return
    check.passed.append(f"inputs/outputs agree with {path.name} (names, dtypes, dims, optional inputs)")
    batch = min(2, mbs) if mbs > 0 else 2
    feeds = _sample_inputs(model, session, batch, 5)
    wanted = list(model.ios("output"))
    full = session.run(wanted, feeds)
    for name, value in zip(wanted, full):
        io = model.ios("output")[name]
        expected = [batch if i == 0 else d for i, d in enumerate(_full_dims(io, mbs))]
        if not _dims_match(expected, list(value.shape)) or value.dtype != NUMPY_TYPES[str(one(io, "data_type"))]:
            errors.append(f"output {name}: got {value.dtype} {list(value.shape)}, config says "
                          f"{one(io, 'data_type')} {expected}")
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
    check.passed.append(f"ran one request shaped as the config says ({shapes})")
    for name, io in inputs.items():
        if not one(io, "optional", False):
            continue
        without = session.run(wanted, {k: v for k, v in feeds.items() if k != name})
        if all(np.array_equal(a, b) for a, b in zip(full, without)):
            check.passed.append(f"ran without optional {name}: same outputs as with the file's default")
        else:
            errors.append(f"without optional {name} the outputs differ from those with its default")


def _compare_io(kind: str, name: str, io: dict[str, list[Any]], info: Any, mbs: int, errors: list[str]) -> None:
    dtype = str(one(io, "data_type"))
    if ONNX_TYPES.get(dtype) != info.type:
        errors.append(f"{kind} {name}: config {dtype}, model {info.type}")
    dims = _full_dims(io, mbs)
    shape = list(info.shape)
    if not _dims_match(shape, dims):
        errors.append(f"{kind} {name}: config dims {config_dims(io)} (max_batch_size {mbs}) do not fit the "
                      f"model's shape {shape}")
    elif mbs > 0 and shape and isinstance(shape[0], int) and shape[0] >= 0:
        errors.append(f"{kind} {name}: max_batch_size > 0 needs a variable first dimension, model has {shape[0]}")


def _check_plan(model: _Model, check: ModelCheck) -> None:
    path = _model_file(model, check, "model.plan")
    if path is None:
        return
    engine_meta = path.with_name(path.name + ".json")
    _labels_file(model, check, len(model.meta.get("labels", [])) or None)
    check.notes.append("model.plan not loaded: checking an engine's inputs needs TensorRT on the GPU it was "
                       "built for" + (f" (build metadata in {engine_meta.name})" if engine_meta.is_file() else ""))


# -- the Python backend stand-in

class _StandInTensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _StandInError(Exception):
    def message(self) -> str:
        return str(self)


class _StandInResponse:
    def __init__(self, output_tensors: Any = None, error: Any = None) -> None:
        self._outputs, self._error = list(output_tensors or []), error

    def output_tensors(self) -> list[_StandInTensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> Any:
        return self._error


class _StandInRequest:
    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self._inputs = [_StandInTensor(k, v) for k, v in tensors.items()]

    def inputs(self) -> list[_StandInTensor]:
        return self._inputs


def stand_in_backend_utils() -> types.ModuleType:
    """A minimal `triton_python_backend_utils` with what bfexport's tokenizer model uses."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _StandInTensor  # type: ignore[attr-defined]
    module.InferenceResponse = _StandInResponse  # type: ignore[attr-defined]
    module.TritonError = _StandInError  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: next(  # type: ignore[attr-defined]
        (t for t in request.inputs() if t.name() == name), None)
    module.get_output_config_by_name = lambda config, name: next(  # type: ignore[attr-defined]
        (o for o in config.get("output", []) if o.get("name") == name), None)
    return module


def model_py_is_ours(version_dir: Path) -> bool:
    """Whether version_dir/model.py is, byte for byte, the TOKENIZER_MODEL_PY bfexport writes
    (read only when it is a regular file, and no further than one byte past that length)."""
    path, ours = version_dir / "model.py", TOKENIZER_MODEL_PY.encode("utf-8")
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(ours) + 1) == ours


def load_python_model(model_dir: str | Path, version: str = VERSION, config_text: str | None = None) -> Any:
    """bfexport's own tokenizer model (TOKENIZER_MODEL_PY, never the model.py in model_dir: checking
    a directory must not run code from it), loaded against the stand-in backend and initialized
    the way Triton does (args: model_config JSON, model_repository = the model directory, version),
    so it reads model_dir's config.pbtxt and tokenizer.json."""
    model_dir = Path(model_dir)
    text = config_text if config_text is not None else (model_dir / "config.pbtxt").read_text(encoding="utf-8")
    config = triton_json(parse_pbtxt(text, str(model_dir / "config.pbtxt")))
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = stand_in_backend_utils()
    try:
        module = types.ModuleType("_bfexport_triton_tokenizer")
        exec(compile(TOKENIZER_MODEL_PY, "<bfexport tokenizer model.py>", "exec"), module.__dict__)
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(config), "model_repository": str(model_dir),
                         "model_version": version, "model_name": model_dir.name,
                         "model_instance_kind": "CPU", "model_instance_name": f"{model_dir.name}_0"})
    return instance


def run_python_model(instance: Any, requests: list[dict[str, np.ndarray]]) -> list[Any]:
    """execute() on stand-in requests; returns the responses (output_tensors(), has_error())."""
    responses = instance.execute([_StandInRequest(r) for r in requests])
    if len(responses) != len(requests):
        raise BfexportError(f"execute returned {len(responses)} responses for {len(requests)} requests")
    return list(responses)


def text_request(texts: list[str], mbs: int) -> np.ndarray:
    array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    return array.reshape(-1, 1) if mbs > 0 else array


def _check_python(model: _Model, check: ModelCheck) -> None:
    params = string_parameters(model.config)
    if params.get("bfexport_role") != "tokenizer":
        check.notes.append("not a bfexport tokenizer model: Python models are checked beyond the schema only "
                           "when bfexport wrote them")
        return
    from bfexport import data

    version = model.version_dirs()
    if not version or not (version[-1] / "model.py").is_file() or not (version[-1] / "tokenizer.json").is_file():
        check.errors.append("1/model.py and 1/tokenizer.json are required")
        return
    if not model_py_is_ours(version[-1]):
        check.errors.append(f"{version[-1].name}/model.py differs from the one bfexport deploy writes: not run "
                            "(redeploy with --force to restore it)")
        return
    instance = load_python_model(model.path, version[-1].name, model.text)
    tokenizer = data.tokenizer_from_str((version[-1] / "tokenizer.json").read_text(encoding="utf-8"))
    max_length = int(params["max_length"])
    outputs = model.ios("output")
    has_budgets = "default_budget_thresholds" in params
    half = len(CHECK_TEXTS) // 2
    requests = [{"text": text_request(CHECK_TEXTS[:half], model.mbs)},
                {"text": text_request(CHECK_TEXTS[half:], model.mbs)}]
    if has_budgets:
        thresholds = np.asarray(json.loads(params["default_budget_thresholds"]), dtype=np.float32)
        custom = np.broadcast_to(_other_thresholds(thresholds), (len(CHECK_TEXTS) - half, thresholds.size))
        requests[1]["budget_thresholds"] = custom
    responses = run_python_model(instance, requests)
    for request, response, texts in zip(requests, responses, (CHECK_TEXTS[:half], CHECK_TEXTS[half:])):
        if response.has_error():
            check.errors.append(f"tokenizer returned an error: {response.error().message()}")
            continue
        got = {t.name(): t.as_numpy() for t in response.output_tensors()}
        ids, mask = data.encode(tokenizer, texts, max_length)
        got_ids, got_mask = got.get("input_ids"), got.get("attention_mask")
        if got_ids is None or got_mask is None or not (np.array_equal(got_ids, ids) and np.array_equal(got_mask, mask)):
            check.errors.append("tokenizer ids / mask differ from bfexport.data.encode")
        for name, value in got.items():
            io = outputs.get(name)
            if io is None:
                check.errors.append(f"model.py returns {name}, which config.pbtxt does not declare")
            elif value.dtype != NUMPY_TYPES[str(one(io, "data_type"))] or not _dims_match(
                    _full_dims(io, model.mbs), list(value.shape)):
                check.errors.append(f"output {name}: got {value.dtype} {list(value.shape)}, config says "
                                    f"{one(io, 'data_type')} {_full_dims(io, model.mbs)}")
        if has_budgets:
            rows = got.get(ROW_OUTPUTS["budget_thresholds"])
            expected = request.get("budget_thresholds", np.broadcast_to(thresholds, (len(texts), thresholds.size)))
            if rows is None or not np.array_equal(rows, expected):
                check.errors.append("row_thresholds do not carry the request's budget (or the default)")
    if not check.errors:
        check.passed.append(f"model.py is bfexport's byte for byte, and its copy (stand-in Python backend) matches "
                            f"bfexport.data.encode on {len(CHECK_TEXTS)} "
                            "texts (empty, accented, longer than max_length)"
                            + ("; budgets passed through and defaulted" if has_budgets else ""))
    if has_budgets:
        bad = run_python_model(instance, [{"text": text_request(["x"], model.mbs),
                                           "budget_thresholds": np.full((1, thresholds.size), 2.0, np.float32)}])
        if bad[0].has_error():
            check.passed.append("an out-of-range budget gets an error response")
        else:
            check.errors.append("an out-of-range budget_thresholds was accepted")


def _other_thresholds(defaults: np.ndarray) -> np.ndarray:
    """Thresholds unlike the defaults, so a budget that is passed through can be told from one
    that is dropped."""
    return np.where(np.abs(defaults - 0.3) < 1e-6, 0.8, 0.3).astype(np.float32)


def _check_ensemble(model: _Model, found: dict[str, _Model], check: ModelCheck, sessions: dict[Path, Any]) -> None:
    inputs, outputs = model.ios("input"), model.ios("output")
    steps = (one(model.config, "ensemble_scheduling", {}) or {}).get("step", [])
    if not steps:
        check.errors.append("ensemble without ensemble_scheduling steps")
        return
    produced: dict[str, str] = {n: str(one(io, "data_type")) for n, io in inputs.items()}
    for step in steps:
        for entry in step.get("output_map", []):
            target = found.get(str(one(step, "model_name")))
            io = target.ios("output").get(str(one(entry, "key"))) if target else None
            produced[str(one(entry, "value"))] = str(one(io, "data_type")) if io else "?"
    for step in steps:
        name = str(one(step, "model_name"))
        target = found.get(name)
        if target is None:
            check.errors.append(f"step model {name} is not in the repository")
            continue
        if model.mbs > 0 and not 0 < model.mbs <= target.mbs:
            check.errors.append(f"step {name}: max_batch_size {target.mbs} must be >= the ensemble's {model.mbs}")
        mapped = set()
        for entry in step.get("input_map", []):
            key, value = str(one(entry, "key")), str(one(entry, "value"))
            mapped.add(key)
            io = target.ios("input").get(key)
            if io is None:
                check.errors.append(f"step {name}: {key} is not an input of {name}")
            elif value not in produced:
                check.errors.append(f"step {name}: {value} is neither an ensemble input nor a step output")
            elif produced[value] not in ("?", str(one(io, "data_type"))):
                check.errors.append(f"step {name}: {value} is {produced[value]}, "
                                    f"{name}.{key} wants {one(io, 'data_type')}")
        for key, io in target.ios("input").items():
            if key not in mapped and not one(io, "optional", False):
                check.errors.append(f"step {name}: required input {key} is not mapped")
        for entry in step.get("output_map", []):
            if str(one(entry, "key")) not in target.ios("output"):
                check.errors.append(f"step {name}: {one(entry, 'key')} is not an output of {name}")
    for name, io in outputs.items():
        if produced.get(name) is None:
            check.errors.append(f"output {name} is produced by no step")
        elif produced[name] not in ("?", str(one(io, "data_type"))):
            check.errors.append(f"output {name}: config {one(io, 'data_type')}, step gives {produced[name]}")
    for name, io in inputs.items():
        if one(io, "optional", False):
            users = [found.get(str(one(s, "model_name"))) for s in steps
                     if any(str(one(e, "value")) == name for e in s.get("input_map", []))]
            for user in users:
                if user is not None:
                    key = next(str(one(e, "key")) for s in steps for e in s.get("input_map", [])
                               if str(one(s, "model_name")) == user.name and str(one(e, "value")) == name)
                    if not one(user.ios("input").get(key, {}), "optional", False):
                        check.errors.append(f"optional input {name} feeds the required {user.name}.{key}")
    _labels_file(model, check, None)
    if check.errors:
        return
    check.passed.append("steps wired consistently (names, dtypes, optional inputs, max_batch_size)")
    _simulate_ensemble(model, steps, found, check, sessions)


def _simulate_ensemble(model: _Model, steps: list[dict[str, list[Any]]], found: dict[str, _Model],
                       check: ModelCheck, sessions: dict[Path, Any]) -> None:
    """Run text -> tokenizer (stand-in) -> ONNX model, and compare with encode() + the model direct."""
    kinds = [str(one(found[str(one(s, "model_name"))].config, "platform", "")
                 or one(found[str(one(s, "model_name"))].config, "backend", "")) for s in steps]
    if kinds != ["python", "onnxruntime_onnx"] or model.meta.get("role") != "ensemble":
        check.notes.append("not run end to end: only bfexport's tokenizer + ONNX Runtime ensembles are simulated")
        return
    from bfexport import data

    tok_model, clf_model = (found[str(one(s, "model_name"))] for s in steps)
    if not tok_model.version_dirs() or not model_py_is_ours(tok_model.version_dirs()[-1]):
        check.notes.append(f"not run end to end: {tok_model.name}'s model.py is not the one bfexport writes")
        return
    instance = load_python_model(tok_model.path, tok_model.version_dirs()[-1].name, tok_model.text)
    session = _session(clf_model.version_dirs()[-1] / "model.onnx", sessions)
    tokenizer = data.tokenizer_from_str((tok_model.version_dirs()[-1] / "tokenizer.json").read_text(encoding="utf-8"))
    max_length = int(string_parameters(tok_model.config)["max_length"])
    defaults = _onnx_defaults(session)
    budgets = "budget_thresholds" in model.ios("input")
    cases: list[dict[str, np.ndarray]] = [{}]
    if budgets:
        other = _other_thresholds(defaults["budget_thresholds"].reshape(-1))
        rows = np.broadcast_to(other, (len(CHECK_TEXTS), other.size))
        cases.append({"budget_thresholds": np.ascontiguousarray(rows)})
    for extra in cases:
        tensors: dict[str, np.ndarray] = {"text": text_request(CHECK_TEXTS, model.mbs), **extra}
        for step in steps:
            target = found[str(one(step, "model_name"))]
            feed = {str(one(e, "key")): tensors[str(one(e, "value"))] for e in step.get("input_map", [])
                    if str(one(e, "value")) in tensors}
            if target is tok_model:
                response = run_python_model(instance, [feed])[0]
                if response.has_error():
                    check.errors.append(f"ensemble run: {tok_model.name} error {response.error().message()}")
                    return
                got = {t.name(): t.as_numpy() for t in response.output_tensors()}
            else:
                wanted = [str(one(e, "key")) for e in step.get("output_map", [])]
                got = dict(zip(wanted, session.run(wanted, feed)))
            for entry in step.get("output_map", []):
                tensors[str(one(entry, "value"))] = got[str(one(entry, "key"))]
        ids, mask = data.encode(tokenizer, CHECK_TEXTS, max_length)
        direct = {"input_ids": ids, "attention_mask": mask}
        for name in BUDGET_INPUTS if budgets else ():
            value = extra.get(name, defaults[name])
            direct[name] = np.ascontiguousarray(np.broadcast_to(value, (len(CHECK_TEXTS), value.shape[-1])))
        reference = session.run(["logits"], direct)[0]
        if not np.allclose(tensors["logits"], reference, atol=1e-5):
            check.errors.append("ensemble logits differ from the model run directly on bfexport.data.encode's ids"
                                + (" with a request budget" if extra else ""))
            return
    check.passed.append("ran end to end (stand-in tokenizer -> ONNX Runtime): logits equal the model's on "
                        "bfexport.data.encode's ids" + (", with and without a request budget" if budgets else ""))
