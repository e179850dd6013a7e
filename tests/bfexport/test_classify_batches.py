"""OnnxClassifier.classify runs at most batch_size texts per session call; a str is one text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from converters import AdaptiveExport, export_with_metadata, save_onnx
from tests.factories import TEXTS


@pytest.fixture()
def clf(model, tokenizer, tmp_path: Path) -> OnnxClassifier:
    return OnnxClassifier(save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()),
                                    tmp_path / "m.onnx"), threads=1)


def test_a_string_is_one_text(clf: OnnxClassifier) -> None:
    [one] = clf.classify(TEXTS[0])
    assert one == clf.classify([TEXTS[0]])[0]


def test_texts_run_in_chunks_with_the_same_results(clf: OnnxClassifier, monkeypatch) -> None:
    texts = TEXTS * 3  # 72 texts
    layers = clf.config.n_layers
    rows = np.random.default_rng(0).uniform(0.05, 1.0, (len(texts), layers)).round(3)
    whole = [clf.classify([t], thresholds=r.tolist())[0] for t, r in zip(texts, rows, strict=True)]
    sizes = []
    real_run = clf.run

    def spy(ids, mask, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(ids))
        return real_run(ids, mask, **kwargs)

    monkeypatch.setattr(clf, "run", spy)
    chunked = clf.classify(texts, thresholds=rows, batch_size=32)
    assert sizes == [32, 32, 8]
    assert [p.label for p in chunked] == [p.label for p in whole]
    assert [p.head_counts for p in chunked] == [p.head_counts for p in whole]
    assert np.allclose([p.score for p in chunked], [p.score for p in whole], atol=1e-5)
    sizes.clear()
    clf.classify(texts)
    assert max(sizes) <= 32


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"thresholds": [[0.5, 0.5, 0.5]] * 2}, "expected 3 rows (one per text), got 2"),
])
def test_bad_arguments(clf: OnnxClassifier, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BfexportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        clf.classify(TEXTS[:3], **kwargs)  # type: ignore[arg-type]
