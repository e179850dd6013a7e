"""Triton's own ModelConfig schema (tritonclient's model_config_pb2): configs are built and read as
its messages, written and parsed with protobuf text format, so a misspelled field is an error."""

from __future__ import annotations

from typing import Any

import numpy as np

from bfexport.errors import BfexportError

ModelConfig = Any  # tritonclient.grpc.model_config_pb2.ModelConfig (tritonclient ships no type information)

ONNX_TYPES = {"TYPE_BOOL": "tensor(bool)", "TYPE_UINT8": "tensor(uint8)", "TYPE_UINT16": "tensor(uint16)",
              "TYPE_UINT32": "tensor(uint32)", "TYPE_UINT64": "tensor(uint64)", "TYPE_INT8": "tensor(int8)",
              "TYPE_INT16": "tensor(int16)", "TYPE_INT32": "tensor(int32)", "TYPE_INT64": "tensor(int64)",
              "TYPE_FP16": "tensor(float16)", "TYPE_FP32": "tensor(float)", "TYPE_FP64": "tensor(double)",
              "TYPE_STRING": "tensor(string)"}
NUMPY_TYPES = {"TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_UINT16": np.uint16, "TYPE_UINT32": np.uint32,
               "TYPE_UINT64": np.uint64, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16, "TYPE_INT32": np.int32,
               "TYPE_INT64": np.int64, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
               "TYPE_STRING": np.object_}


def schema() -> Any:
    """tritonclient's model_config_pb2 module, or the one-line install hint (the `deploy` extra)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except Exception as e:  # ImportError, or a protobuf runtime mismatch raised at import
        raise BfexportError("deploy needs tritonclient (Triton's ModelConfig schema, to write and check "
                            f"config.pbtxt): pip install 'bfexport[deploy]' ({type(e).__name__}: {e})") from None
    return model_config_pb2


def render_config(config: ModelConfig, header: str) -> str:
    """`header` (comment lines) and the config in protobuf text format, fields in the schema's order
    (name, platform or backend, max_batch_size, ...), as Triton's documentation writes them."""
    from google.protobuf import text_format

    text: str = text_format.MessageToString(config, as_utf8=True, use_short_repeated_primitives=True,
                                            use_index_order=True)
    return header + text


def parse_config(text: str) -> ModelConfig:
    """A config.pbtxt as a ModelConfig; unknown fields, wrong types and bad enums raise BfexportError."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, schema().ModelConfig())
    except text_format.ParseError as e:
        raise BfexportError(f"not a valid Triton ModelConfig: {e}") from None


def config_json(config: ModelConfig) -> dict[str, Any]:
    """The config as the JSON a Python-backend model receives in args["model_config"]."""
    from google.protobuf import json_format

    out: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return out


def string_parameters(config: ModelConfig) -> dict[str, str]:
    return {str(key): str(value.string_value) for key, value in config.parameters.items()}


def dtype_name(io: Any) -> str:
    """A ModelInput / ModelOutput's data_type as its enum name (TYPE_INT64)."""
    return str(schema().DataType.Name(io.data_type))


def full_dims(io: Any, mbs: int) -> list[int]:
    """The tensor's dims with the batch dimension Triton leaves out when max_batch_size > 0."""
    return ([-1] if mbs > 0 else []) + [int(d) for d in io.dims]
