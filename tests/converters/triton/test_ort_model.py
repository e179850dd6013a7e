"""converters/triton/ort_model.py, the live check's python-backend stand-in for Triton's ONNX
Runtime backend, imported against the test stand-in for `triton_python_backend_utils`: requests
of one execute() with the same shapes run as one batch, and each gets exactly its own rows, equal
to ONNX Runtime run on that request alone."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from converters.triton.schema import config_json, parse_config
from tests.converters.triton import backend_stand_in


@pytest.fixture()
def ort_model(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", backend_stand_in.module())
    monkeypatch.delitem(sys.modules, "converters.triton.ort_model", raising=False)
    module = importlib.import_module("converters.triton.ort_model")
    yield module
    sys.modules.pop("converters.triton.ort_model", None)


def test_same_shape_requests_batch_and_each_gets_its_own_rows(ort_model, tiny_repo: Path) -> None:
    model_dir = tiny_repo / "m"
    config = parse_config((model_dir / "config.pbtxt").read_text())
    instance = ort_model.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(config_json(config)), "model_repository": str(model_dir),
                         "model_version": "1"})
    rng = np.random.default_rng(0)
    layers = next(int(i.dims[0]) for i in config.input if i.name == "budget_thresholds")
    calls: list[dict[str, np.ndarray]] = []
    session = instance.session

    class Spy:
        def run(self, names, feed):
            calls.append(feed)
            return session.run(names, feed)

    instance.session = Spy()

    def request(rows: int, width: int) -> dict[str, np.ndarray]:
        return {"input_ids": rng.integers(1, 100, (rows, width)), "attention_mask": np.ones((rows, width), np.int64),
                "budget_thresholds": rng.uniform(0.1, 1.0, (rows, layers)).astype(np.float32),
                "head_caps": rng.integers(1, 5, (rows, layers))}

    feeds = [request(1, 16), request(2, 16), request(1, 9), request(3, 16)]
    responses = instance.execute([backend_stand_in.Request(**f) for f in feeds])
    assert sorted(len(c["input_ids"]) for c in calls) == [1, 6]  # width 16: one run of 6 rows; width 9 alone
    reference = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for feed, response in zip(feeds, responses, strict=True):
        expected = dict(zip(["logits", "head_counts"], reference.run(["logits", "head_counts"], feed), strict=True))
        assert not response.has_error()
        assert np.allclose(response.tensors["logits"], expected["logits"], atol=1e-5)
        assert np.array_equal(response.tensors["head_counts"], expected["head_counts"])


def test_an_onnx_runtime_failure_is_that_request_group_s_error(ort_model, tiny_repo: Path) -> None:
    model_dir = tiny_repo / "m"
    config = parse_config((model_dir / "config.pbtxt").read_text())
    instance = ort_model.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(config_json(config)), "model_repository": str(model_dir),
                         "model_version": "1"})
    [response] = instance.execute([backend_stand_in.Request(input_ids=np.ones((1, 4), np.int64),
                                                            attention_mask=np.ones((1, 4), np.int64))])
    assert response.has_error() and "budget_thresholds" in response.error().message()
