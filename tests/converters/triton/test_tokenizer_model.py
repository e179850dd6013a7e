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
# redeployed (the check says so). Changed once: 684b474b... tokenized whole texts before truncating.
MODEL_PY_SHA256 = "5d14af198c0163397bc3eaaad10cda71eb0123e21474761aa5166857c41cf42a"


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
