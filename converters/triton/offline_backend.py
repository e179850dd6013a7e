"""Run bfexport's tokenizer model offline for `deploy --check`: a minimal stand-in for Triton's
`triton_python_backend_utils` (which exists only inside the server), with just what
tokenizer_model.py uses, and the model loaded and initialized the way Triton does it."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from bfexport.errors import BfexportError
from converters.triton.build import tokenizer_model_py
from converters.triton.layout import VERSION
from converters.triton.schema import ModelConfig, config_json


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError(Exception):
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, message: str, code: int = 1) -> None:  # Triton's default code: INTERNAL (HTTP 500)
        super().__init__(message)
        self._code = code

    def message(self) -> str:
        return str(self.args[0])

    def code(self) -> int:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors: Any = None, error: Any = None) -> None:
        self._outputs, self._error = list(output_tensors or []), error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> Any:
        return self._error


class InferenceRequest:
    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self._inputs = [Tensor(k, v) for k, v in tensors.items()]

    def inputs(self) -> list[Tensor]:
        return self._inputs


def backend_utils() -> types.ModuleType:
    """The stand-in `triton_python_backend_utils` module."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    module.TritonError = TritonError  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: next(  # type: ignore[attr-defined]
        (t for t in request.inputs() if t.name() == name), None)
    module.get_output_config_by_name = lambda config, name: next(  # type: ignore[attr-defined]
        (o for o in config.get("output", []) if o.get("name") == name), None)
    return module


def load_tokenizer_model(model_dir: Path, config: ModelConfig, version: str = VERSION) -> Any:
    """bfexport's own tokenizer model (tokenizer_model.py, never the model.py in model_dir: checking
    a directory must not run code from it), loaded against the stand-in backend and initialized
    the way Triton does (args: model_config JSON, model_repository = the model directory, version),
    so it reads model_dir's tokenizer.json."""
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = backend_utils()
    try:
        module = types.ModuleType("_bfexport_triton_tokenizer")
        exec(compile(tokenizer_model_py(), "<bfexport tokenizer model.py>", "exec"), module.__dict__)
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(config_json(config)), "model_repository": str(model_dir),
                         "model_version": version, "model_name": model_dir.name,
                         "model_instance_kind": "CPU", "model_instance_name": f"{model_dir.name}_0"})
    return instance


def run_tokenizer_model(instance: Any, requests: list[dict[str, np.ndarray]]) -> list[InferenceResponse]:
    """execute() on stand-in requests; returns the responses (output_tensors(), has_error())."""
    responses = instance.execute([InferenceRequest(r) for r in requests])
    if len(responses) != len(requests):
        raise BfexportError(f"execute returned {len(responses)} responses for {len(requests)} requests")
    return list(responses)


def text_request(texts: list[str], mbs: int) -> np.ndarray:
    """A `text` input tensor (BYTES) as Triton hands it over: [batch, 1] when the model batches."""
    array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    return array.reshape(-1, 1) if mbs > 0 else array
