"""A tiny random BudgetFormer exported to ONNX, and labelled texts, shared by the calibration tests.

Router weights are drawn with std 1 so that the budget k varies from input to input; the
labels are random, so accuracy is a noisy objective, like a real small calibration set.
"""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path

import pytest
import torch

from bfexport.data import encode, tokenizer_from_str, train_tokenizer
from converters import AdaptiveExport, DenseExport, export_with_metadata, save_onnx
from tests import factories

LABELS = ["alpha", "beta", "gamma"]
WORDS = ("package library tool python rust data parser server client font game music network "
         "image audio video text editor shell kernel driver docs test build compiler debug").split()


# Two layers, 200 tokens, 3 labels; attention strong enough that the heads run change predictions.
tiny_model = partial(factories.tiny_model, init="strong", vocab_size=200, n_layers=2, labels=LABELS)


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 30))) for _ in range(n)]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return make_texts(96)


@pytest.fixture(scope="session")
def labels(texts: list[str], tokenizer_json: str) -> list[str]:
    """The all-heads model's predictions with a third of them replaced at random: accuracy then
    tracks agreement with the full model, plus noise, as on real data."""
    tokenizer = tokenizer_from_str(tokenizer_json)
    ids, mask = encode(tokenizer, texts, 32)
    model = tiny_model(0)
    preds = model.predict(torch.from_numpy(ids), torch.from_numpy(mask), thresholds=[1.0, 1.0]).logits.argmax(-1)
    rng = random.Random(1)
    return [rng.choice(LABELS) if rng.random() < 0.33 else LABELS[int(p)] for p in preds]


@pytest.fixture(scope="session")
def tokenizer_json(texts: list[str]) -> str:  # noqa: D103
    return train_tokenizer(texts, 200).to_str()


def _exported(factory: pytest.TempPathFactory, name: str, seed: int, flavor, tokenizer_json: str) -> Path:
    path = factory.mktemp(name) / f"{name}.onnx"
    save_onnx(export_with_metadata(tiny_model(seed), flavor, tokenizer_json), path)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory, tokenizer_json: str) -> Path:
    return _exported(tmp_path_factory, "tiny", 0, AdaptiveExport(), tokenizer_json)


@pytest.fixture(scope="session")
def other_model_path(tmp_path_factory: pytest.TempPathFactory, tokenizer_json: str) -> Path:
    return _exported(tmp_path_factory, "other", 1, AdaptiveExport(), tokenizer_json)


@pytest.fixture(scope="session")
def dense_model_path(tmp_path_factory: pytest.TempPathFactory, tokenizer_json: str) -> Path:
    return _exported(tmp_path_factory, "dense", 0, DenseExport(), tokenizer_json)


@pytest.fixture(scope="session")
def data_path(tmp_path_factory: pytest.TempPathFactory, texts: list[str], labels: list[str]) -> Path:
    path = tmp_path_factory.mktemp("data") / "cal.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels, strict=True)))
    return path
