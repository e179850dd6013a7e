"""A test stand-in for Triton's `triton_python_backend_utils` (it exists only inside the server),
written from Triton's python_backend documentation, independent of the one `deploy --check` uses,
so tokenizer_model.py is tested as a module against an API bfexport's check did not write."""

from __future__ import annotations

import types
from typing import Any

import numpy as np


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
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.tensors, self._error = {t.name(): t.as_numpy() for t in output_tensors}, error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class Request:
    def __init__(self, **inputs: np.ndarray) -> None:
        self.tensors = {name: Tensor(name, value) for name, value in inputs.items()}


def module() -> types.ModuleType:
    """A fresh `triton_python_backend_utils` module for sys.modules."""
    pb_utils = types.ModuleType("triton_python_backend_utils")
    pb_utils.Tensor = Tensor  # type: ignore[attr-defined]
    pb_utils.TritonError = TritonError  # type: ignore[attr-defined]
    pb_utils.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    pb_utils.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)  # type: ignore[attr-defined]
    pb_utils.get_output_config_by_name = lambda config, name: {  # type: ignore[attr-defined]
        o["name"]: o for o in config["output"]}.get(name)
    return pb_utils
