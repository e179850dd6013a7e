"""OnnxClassifier: text in, labels out, budget per call, safe across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from converters import AdaptiveExport, DenseExport, export_with_metadata, save_onnx


@pytest.fixture()
def clf(model, tokenizer, tmp_path: Path) -> OnnxClassifier:
    return OnnxClassifier(save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()),
                                    tmp_path / "m.onnx"), threads=1)


def test_classify_returns_labels_and_budgets(clf: OnnxClassifier, texts) -> None:
    full = clf.classify(texts, thresholds=[1.0] * 3)
    low = clf.classify(texts, thresholds=[0.05] * 3)
    assert {p.label for p in full} <= set(clf.config.labels)
    assert all(p.head_counts == [4, 4, 4] for p in full)
    assert sum(sum(p.head_counts) for p in low) < sum(sum(p.head_counts) for p in full)
    assert all(0 < p.score <= 1 for p in full)
    assert clf.classify([]) == []


def test_per_call_thresholds_do_not_leak_between_threads(clf: OnnxClassifier, texts) -> None:
    budgets = [[1.0] * 3, [0.05] * 3, [0.5] * 3]
    expected = {i: clf.classify(texts, thresholds=budgets[i % 3]) for i in range(3)}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (i % 3, clf.classify(texts, thresholds=budgets[i % 3])), range(48)))
    for key, got in results:
        assert got == expected[key]


@pytest.mark.parametrize("kwargs, message", [
    (dict(thresholds=[0.0, 0.5, 0.5]), r"\(0, 1\]"),
    (dict(thresholds=[0.5, 0.5]), "expected a list of 3"),
    (dict(caps=[9, 1, 1]), r"\[1, 4\]"),
    (dict(thresholds=np.ones((3, 3))), "expected"),
])
def test_bad_budgets_are_refused(clf: OnnxClassifier, texts, kwargs, message: str) -> None:
    with pytest.raises(BfexportError, match=message):
        clf.classify(texts[:2], **kwargs)


def test_bad_batches_are_refused(clf: OnnxClassifier) -> None:
    ids = np.ones((2, 4), dtype=np.int64)
    with pytest.raises(BfexportError, match="all padding"):
        clf.run(ids, np.array([[1, 1, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(BfexportError, match="max_length"):
        clf.run(np.ones((1, 40), dtype=np.int64), np.ones((1, 40), dtype=np.int64))
    with pytest.raises(BfexportError, match="non-empty"):
        clf.run(np.ones((1, 0), dtype=np.int64), np.ones((1, 0), dtype=np.int64))


def test_long_text_is_truncated_to_max_length(clf: OnnxClassifier) -> None:
    (prediction,) = clf.classify(["library " * 500])
    assert prediction.label in clf.config.labels


def test_dense_flavor_has_no_budget_inputs(model, tokenizer, tmp_path: Path, texts) -> None:
    dense = OnnxClassifier(save_onnx(export_with_metadata(model, DenseExport(), tokenizer.to_str()),
                                     tmp_path / "d.onnx"))
    assert all(p.head_counts == [4, 4, 4] for p in dense.classify(texts))
    with pytest.raises(BfexportError, match="no budget inputs"):
        dense.classify(texts, thresholds=[0.5] * 3)
