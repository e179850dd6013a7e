"""The standard-library Triton HTTP client's binary tensor format: requests as the KServe v2
binary extension lays them out, responses read back to the same arrays."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from converters.triton.http_client import decode_response, encode_request


def test_a_request_is_a_json_header_then_each_tensor_in_binary() -> None:
    text = np.array([["héllo".encode()], [b""]], dtype=np.object_)
    rows = np.array([[0.5, 1.0]], dtype=np.float32)
    body, length = encode_request({"text": text, "budget_thresholds": rows}, ["logits"])
    header = json.loads(body[:length])
    assert header["inputs"] == [
        {"name": "text", "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 4 + 6 + 4}},
        {"name": "budget_thresholds", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]
    assert header["outputs"] == [{"name": "logits", "parameters": {"binary_data": True}}]
    assert body[length:] == struct.pack("<I", 6) + "héllo".encode() + struct.pack("<I", 0) + rows.tobytes()


def test_a_response_is_read_back_to_the_arrays_it_carries() -> None:
    logits = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    counts = np.array([[8, 1], [3, 2]], dtype=np.int64)
    head = json.dumps({"outputs": [
        {"name": "logits", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": logits.nbytes}},
        {"name": "head_counts", "datatype": "INT64", "shape": [2, 2], "parameters": {"binary_data_size": 32}},
        {"name": "label", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 7}},
        {"name": "json", "datatype": "INT64", "shape": [2], "data": [4, 5]}]}).encode()
    body = head + logits.tobytes() + counts.tobytes() + struct.pack("<I", 3) + b"abc"
    out = decode_response(body, len(head))
    assert np.array_equal(out["logits"], logits) and out["logits"].dtype == np.float32
    assert np.array_equal(out["head_counts"], counts)
    assert out["label"].tolist() == [b"abc"] and out["json"].tolist() == [4, 5]


def test_a_dtype_triton_has_no_name_for_here_is_refused() -> None:
    with pytest.raises(ValueError, match="complex64 has no Triton datatype"):
        encode_request({"x": np.zeros(2, np.complex64)}, None)
