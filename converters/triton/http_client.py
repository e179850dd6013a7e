"""A small client of Triton's HTTP/REST API (KServe v2 protocol, binary tensor data), standard
library only: readiness, model load, inference, statistics. One keep-alive connection per thread,
so one TritonClient serves many client threads.

    client = TritonClient("127.0.0.1:8000")
    out = client.infer("sections_text", {"text": np.array([[b"a text"]], dtype=object)})
    out["logits"]                       # numpy arrays, by output name
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
from typing import Any

import numpy as np

DATATYPES: dict[np.dtype[Any], str] = {
    np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32", np.dtype(np.bool_): "BOOL", np.dtype(np.object_): "BYTES"}
NUMPY: dict[str, np.dtype[Any]] = {name: dtype for dtype, name in DATATYPES.items()}


class InferError(Exception):
    """A request the server answered with an error: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def _bytes_tensor(array: np.ndarray) -> bytes:
    """BYTES elements as Triton's binary format writes them: a 4-byte little-endian length, then the bytes."""
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def _from_bytes(raw: bytes, shape: list[int]) -> np.ndarray:
    items, at = [], 0
    while at < len(raw):
        (size,) = struct.unpack_from("<I", raw, at)
        items.append(raw[at + 4:at + 4 + size])
        at += 4 + size
    return np.array(items, dtype=np.object_).reshape(shape)


def encode_request(inputs: dict[str, np.ndarray], outputs: list[str] | None) -> tuple[bytes, int]:
    """The request body (JSON header + binary tensors) and the header's length."""
    specs, blobs = [], []
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = DATATYPES.get(array.dtype)
        if datatype is None:
            raise ValueError(f"{name}: dtype {array.dtype} has no Triton datatype here")
        blob = _bytes_tensor(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
        specs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                      "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header: dict[str, Any] = {"inputs": specs}
    if outputs is not None:
        header["outputs"] = [{"name": o, "parameters": {"binary_data": True}} for o in outputs]
    else:
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header).encode()
    return head + b"".join(blobs), len(head)


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    head = json.loads(body[:header_length] if header_length is not None else body)
    at = header_length or len(body)
    out: dict[str, np.ndarray] = {}
    for spec in head.get("outputs", []):
        shape, datatype = [int(d) for d in spec["shape"]], spec["datatype"]
        size = spec.get("parameters", {}).get("binary_data_size")
        if size is None:
            out[spec["name"]] = np.asarray(spec["data"], dtype=NUMPY.get(datatype)).reshape(shape)
            continue
        raw = body[at:at + int(size)]
        at += int(size)
        out[spec["name"]] = (_from_bytes(raw, shape) if datatype == "BYTES"
                             else np.frombuffer(raw, dtype=NUMPY[datatype]).reshape(shape).copy())
    return out


class TritonClient:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.host, _, port = url.rpartition(":")
        self.port, self.timeout = int(port), timeout
        self._local = threading.local()

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):  # a kept-alive connection the server closed is retried once on a new one
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def ready(self) -> bool:
        try:
            return self._request("GET", "/v2/health/ready")[0] == 200
        except OSError:
            return False

    def _ok(self, status: int, body: bytes) -> bytes:
        if status != 200:
            try:
                message = str(json.loads(body).get("error", body.decode(errors="replace")))
            except (ValueError, AttributeError):
                message = body.decode(errors="replace")
            raise InferError(status, message)
        return body

    def load(self, model: str) -> None:
        self._ok(*self._request("POST", f"/v2/repository/models/{model}/load", b"{}")[::2])

    def model_ready(self, model: str) -> bool:
        return self._request("GET", f"/v2/models/{model}/ready")[0] == 200

    def statistics(self, model: str) -> dict[str, Any]:
        """The model's inference statistics (execution_count, inference_count, ...)."""
        body = self._ok(*self._request("GET", f"/v2/models/{model}/stats")[::2])
        stats: list[dict[str, Any]] = json.loads(body).get("model_stats", [])
        return stats[0] if stats else {}

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, Any]:
        """Run one request; returns the outputs as numpy arrays, or raises InferError."""
        body, header_length = encode_request(inputs, outputs)
        status, headers, answer = self._request(
            "POST", f"/v2/models/{model}/infer", body,
            {"Inference-Header-Content-Length": str(header_length), "Content-Type": "application/octet-stream"})
        self._ok(status, answer)
        length = headers.get("inference-header-content-length")
        return decode_response(answer, int(length) if length is not None else None)
