"""The offline check of an ONNX Runtime model (the config against the file, the way Triton's
backend compares them, then runs shaped as the config says) and of a TensorRT plan (layout only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.triton.layout import MODEL_FILES
from converters.triton.model_dir import (
    ModelCheck,
    ModelDir,
    dims_match,
    labels_file,
    model_file,
    onnx_defaults,
    session,
)
from converters.triton.schema import NUMPY_TYPES, ONNX_TYPES, dtype_name, full_dims


def _sample_inputs(model: ModelDir, session: Any, batch: int, seq: int) -> dict[str, np.ndarray]:
    """One request per the config: input_ids from the sample texts when the file carries a tokenizer,
    attention_mask ones, the budget inputs at the file's defaults (one row per sample), else zeros."""
    feeds: dict[str, np.ndarray] = {}
    defaults = onnx_defaults(session)
    for name, io in model.ios("input").items():
        dtype = NUMPY_TYPES.get(dtype_name(io), np.float32)
        dims = full_dims(io, model.mbs)
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


def check_onnx(model: ModelDir, check: ModelCheck, sessions: dict[Path, Any]) -> None:
    path = model_file(model, check, MODEL_FILES["onnxruntime"])
    if path is None:
        return
    try:
        loaded = session(path, sessions)
    except Exception as e:  # noqa: BLE001
        check.errors.append(f"ONNX Runtime cannot load {path.name}: {type(e).__name__}: {str(e).splitlines()[0]}")
        return
    mbs = model.mbs
    plain = {i.name: i for i in loaded.get_inputs()}
    overridable = {i.name: i for i in loaded.get_overridable_initializers()}
    outputs = {o.name: o for o in loaded.get_outputs()}
    inputs = model.ios("input")
    errors = check.errors
    required = [n for n, io in inputs.items() if not io.optional]
    if sorted(required) != sorted(plain):
        errors.append(f"the config's required inputs {sorted(required)} must be exactly the model's inputs "
                      f"{sorted(plain)} (Triton's ONNX Runtime backend counts them)")
    for name, io in inputs.items():
        info = plain.get(name) or overridable.get(name)
        if info is None:
            errors.append(f"input {name}: not an input of {path.name}")
            continue
        if io.optional and name not in overridable:
            errors.append(f"input {name}: optional in the config but required by the model (no initializer)")
        if io.optional and mbs > 0:
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
    labels_file(model, check, n_labels)
    if errors:
        return
    check.passed.append(f"inputs/outputs agree with {path.name} (names, dtypes, dims, optional inputs)")
    batch = min(2, mbs) if mbs > 0 else 2
    feeds = _sample_inputs(model, loaded, batch, 5)
    wanted = list(model.ios("output"))
    full = loaded.run(wanted, feeds)
    for name, value in zip(wanted, full, strict=True):
        io = model.ios("output")[name]
        expected = [batch if i == 0 else d for i, d in enumerate(full_dims(io, mbs))]
        if not dims_match(expected, list(value.shape)) or value.dtype != NUMPY_TYPES[dtype_name(io)]:
            errors.append(f"output {name}: got {value.dtype} {list(value.shape)}, config says "
                          f"{dtype_name(io)} {expected}")
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
    check.passed.append(f"ran one request shaped as the config says ({shapes})")
    for name, io in inputs.items():
        if not io.optional:
            continue
        without = loaded.run(wanted, {k: v for k, v in feeds.items() if k != name})
        if all(np.array_equal(a, b) for a, b in zip(full, without, strict=True)):
            check.passed.append(f"ran without optional {name}: same outputs as with the file's default")
        else:
            errors.append(f"without optional {name} the outputs differ from those with its default")


def _compare_io(kind: str, name: str, io: Any, info: Any, mbs: int, errors: list[str]) -> None:
    dtype = dtype_name(io)
    if ONNX_TYPES.get(dtype) != info.type:
        errors.append(f"{kind} {name}: config {dtype}, model {info.type}")
    dims = full_dims(io, mbs)
    shape = list(info.shape)
    if not dims_match(shape, dims):
        errors.append(f"{kind} {name}: config dims {list(io.dims)} (max_batch_size {mbs}) do not fit the "
                      f"model's shape {shape}")
    elif mbs > 0 and shape and isinstance(shape[0], int) and shape[0] >= 0:
        errors.append(f"{kind} {name}: max_batch_size > 0 needs a variable first dimension, model has {shape[0]}")


def check_plan(model: ModelDir, check: ModelCheck) -> None:
    path = model_file(model, check, MODEL_FILES["tensorrt"])
    if path is None:
        return
    engine_meta = path.with_name(path.name + ".json")
    labels_file(model, check, len(model.meta.get("labels", [])) or None)
    check.notes.append("model.plan not loaded: checking an engine's inputs needs TensorRT on the GPU it was "
                       "built for" + (f" (build metadata in {engine_meta.name})" if engine_meta.is_file() else ""))
