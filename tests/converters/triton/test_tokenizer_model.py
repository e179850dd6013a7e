"""converters/triton/tokenizer_model.py is a real module: imported here against a test stand-in for
`triton_python_backend_utils`, it tokenizes as bfexport.data.encode does and passes budgets through;
the bytes a deploy writes are that file's, pinned by their sha256."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bfexport import data
from converters.triton.build import tokenizer_model_py
from converters.triton.schema import config_json, parse_config
from tests.converters.triton import backend_stand_in

# model.py as this bfexport writes it; `deploy --check` accepts a model.py only when it is these
# bytes, so a change here makes every repository deployed before it fail its check until it is
# redeployed (the check says so). Changed three times: 684b474b... tokenized whole texts before truncating;
# ccde5427... padded to the longest text, answered bad requests with INTERNAL (HTTP 500); b9e1a7da... added
# no post-processor's special tokens (an imported model's [CLS] ... [SEP]).
MODEL_PY_SHA256 = "9183f9c90142cc3d105ec82b08ef7e23c7eed7f74df027536289337259b91d99"


@pytest.fixture()
def repo(tiny_repo: Path) -> Path:
    return tiny_repo


@pytest.fixture()
def tokenizer_model(monkeypatch: pytest.MonkeyPatch):
    """converters.triton.tokenizer_model, freshly imported against the stand-in."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", backend_stand_in.module())
    monkeypatch.delitem(sys.modules, "converters.triton.tokenizer_model", raising=False)
    module = importlib.import_module("converters.triton.tokenizer_model")
    yield module
    sys.modules.pop("converters.triton.tokenizer_model", None)


def initialized(module, model_dir: Path):
    instance = module.TritonPythonModel()
    config = parse_config((model_dir / "config.pbtxt").read_text())
    instance.initialize({"model_config": json.dumps(config_json(config)), "model_repository": str(model_dir),
                         "model_version": "1"})
    return instance


def texts_in(texts: list[str]) -> np.ndarray:
    return np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)


def test_the_written_model_py_is_the_package_file_unchanged(repo: Path) -> None:
    written = (repo / "m_tokenizer" / "1" / "model.py").read_bytes()
    package_file = Path(importlib.util.find_spec("converters.triton").origin).with_name("tokenizer_model.py")
    assert written == tokenizer_model_py() == package_file.read_bytes()
    assert hashlib.sha256(written).hexdigest() == MODEL_PY_SHA256


def test_tokenizes_as_encode_and_passes_budgets_through(tokenizer_model, repo: Path, tokenizer) -> None:
    instance = initialized(tokenizer_model, repo / "m_tokenizer")
    texts = ["", "Gäme about SPACE", " ".join(["documentation for the network tools"] * 20), "zzz"]
    n_layers = instance.defaults["budget_thresholds"].shape[1]
    budget = np.full((len(texts), n_layers), 0.25, dtype=np.float32)
    given, default, bad = instance.execute([
        backend_stand_in.Request(text=texts_in(texts), budget_thresholds=budget),
        backend_stand_in.Request(text=texts_in(texts[:1])),
        backend_stand_in.Request(text=texts_in(["x"]), head_caps=np.full((1, n_layers), 99, np.int64))])
    ids, mask = data.encode(tokenizer, texts, instance.max_length)
    assert np.array_equal(given.tensors["input_ids"], ids) and np.array_equal(given.tensors["attention_mask"], mask)
    assert given.tensors["input_ids"][0, 0] == tokenizer.token_to_id("[UNK]")  # an empty text: one [UNK]
    assert np.array_equal(given.tensors["row_thresholds"], budget)
    assert np.array_equal(default.tensors["row_thresholds"], instance.defaults["budget_thresholds"])
    assert default.tensors["row_caps"].dtype == np.int64
    assert bad.has_error() and "head_caps must lie in" in bad.error().message() and bad.tensors == {}


def test_long_texts_are_cut_before_tokenizing_to_the_same_ids(tokenizer_model, repo: Path, tokenizer) -> None:
    instance = initialized(tokenizer_model, repo / "m_tokenizer")
    seen: list[int] = []
    encode_batch = instance.tokenizer.encode_batch

    def spy(texts, **kwargs):
        seen.extend(len(t) for t in texts)
        return encode_batch(texts, **kwargs)

    real = instance.tokenizer
    instance.tokenizer = type("Spy", (), {"encode_batch": staticmethod(spy),  # the rest is the real tokenizer's
                                          "__getattr__": lambda self, name: getattr(real, name)})()
    huge = "python bindings " * 62_500  # 1M characters
    texts = [huge, "x" * 5000, " " * 3000 + "game", "a" + " " * 10_000, "short text"]
    [response] = instance.execute([backend_stand_in.Request(text=texts_in(texts))])
    ids, mask = data.encode(tokenizer, texts, instance.max_length)
    assert np.array_equal(response.tensors["input_ids"], ids)
    assert np.array_equal(response.tensors["attention_mask"], mask)
    # the 1M-character text is cut to a prefix; the one-word 10,001-character text is tokenized
    # whole, as it must be (its one token could end anywhere), by doubling prefixes
    assert max(seen) <= 2 * len(texts[3]) and len(huge) not in seen


def test_pads_each_request_to_its_length_bucket(tokenizer_model, repo: Path, tokenizer) -> None:
    instance = initialized(tokenizer_model, repo / "m_tokenizer")
    assert instance.buckets == []  # the default on ONNX Runtime: each request's longest text
    short, long = ["zzz", "Gäme"], [" ".join(["documentation for the network tools"] * 20)]
    widths = []
    for buckets in ([16, 32], []):
        instance.buckets = buckets
        for texts in (short, long):
            [response] = instance.execute([backend_stand_in.Request(text=texts_in(texts))])
            ids, mask = data.encode(tokenizer, texts, instance.max_length)
            got_ids, got_mask = response.tensors["input_ids"], response.tensors["attention_mask"]
            width = ids.shape[1]
            widths.append(got_ids.shape[1])
            assert np.array_equal(got_ids[:, :width], ids) and np.array_equal(got_mask[:, :width], mask)
            assert not got_ids[:, width:].any() and not got_mask[:, width:].any()
    short_width = data.encode(tokenizer, short, 32)[0].shape[1]
    assert short_width < 16 and widths == [16, 32, short_width, 32]


def test_bad_requests_get_invalid_arg_and_one_message(tokenizer_model, repo: Path) -> None:
    instance = initialized(tokenizer_model, repo / "m_tokenizer")
    layers = instance.defaults["budget_thresholds"].shape[1]
    responses = instance.execute([
        backend_stand_in.Request(text=texts_in(["a"]), budget_thresholds=np.full((1, layers), 1.5, np.float32)),
        backend_stand_in.Request(text=texts_in([])),
        backend_stand_in.Request(text=texts_in(["a", "b"]), budget_thresholds=np.full((1, layers), 0.5, np.float32)),
        backend_stand_in.Request(text=texts_in(["a"]), head_caps=np.zeros((1, layers), np.int64)),
        backend_stand_in.Request(text=texts_in(["a"]))])
    messages = [r.error().message() for r in responses[:4]]
    assert all(r.error().code() == backend_stand_in.TritonError.INVALID_ARG for r in responses[:4])
    assert messages[0] == "budget_thresholds must lie in (0, 1]"
    assert messages[1] == "text: the request holds no text"
    # batching (max_batch_size > 0): one row per text, never one row for the request
    assert messages[2] == f"budget_thresholds: expected shape [2, {layers}] (one row per text of {layers} values), " \
                          f"got [1, {layers}]"
    assert messages[3].startswith("head_caps must lie in [1, ")
    assert not responses[4].has_error()  # a good request in the same batch is answered
