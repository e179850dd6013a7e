"""The evaluator's path cache gives exactly what running the model gives; data from any source."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pytest

from bfexport import cost
from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from bfexport.summary import run_data
from calibration.api import load_model
from calibration.evaluate import Config, Evaluator
from calibration.flops import FlopsModel
from calibration.inputs import collect

CONFIGS = [Config(t, c) for t, c in itertools.product([(0.05, 0.9), (0.5, 0.5), (0.9, 0.2), (1.0, 1.0)],
                                                       [(4, 4), (2, 3), (1, 4)])]


@pytest.fixture(scope="module")
def evaluator(model_path: Path, data_path: Path) -> Evaluator:
    exported, tokenizer = load_model(model_path)
    return Evaluator(exported, collect(data_path, exported.config, tokenizer), batch_size=8)


def test_path_cache_is_exact(evaluator: Evaluator, model_path: Path, texts: list[str]) -> None:
    clf = OnnxClassifier(model_path)
    outcomes = evaluator.outcomes(CONFIGS)
    assert evaluator.exact_tracking and evaluator.stats.mismatches == 0
    assert evaluator.stats.rows < len(CONFIGS) * len(texts)  # shared paths were not run twice
    for c, o in zip(CONFIGS, outcomes, strict=True):
        out = run_data(functools.partial(clf.run, thresholds=c.thresholds, caps=c.caps), clf.tokenizer, clf.config,
                       texts)
        assert o.exact
        assert np.array_equal(o.heads, out["head_counts"]), c
        assert np.array_equal(o.preds, out["logits"].argmax(-1)), c


def test_screening_runs_nothing_and_is_close(evaluator: Evaluator) -> None:
    evaluator.outcomes([Config((1.0, 1.0), (4, 4))])
    rows = evaluator.stats.rows
    screened = evaluator.outcomes([Config((0.33, 0.77), (3, 4))], exact=False)[0]
    assert evaluator.stats.rows == rows
    exact = evaluator.outcomes([Config((0.33, 0.77), (3, 4))])[0]
    assert np.array_equal(screened.heads[:, 0], exact.heads[:, 0])  # layer 0 never depends on earlier choices


def test_flops_model_matches_cost_module(evaluator: Evaluator, model_path: Path) -> None:
    cfg = load_model(model_path)[0].config
    lengths = evaluator.data.lengths
    model = FlopsModel(cfg, lengths)
    for o in evaluator.outcomes(CONFIGS[:4]):
        assert model.ratio(o.heads) == pytest.approx(cost.flops_ratio(cfg, lengths, o.heads), rel=1e-12)
    assert sum(model.per_layer_ratio(o.heads)) < model.ratio(o.heads)


def test_sources_agree(model_path: Path, data_path: Path, texts: list[str], labels: list[str]) -> None:
    exported, tokenizer = load_model(model_path)
    cfg = exported.config
    from_file = collect(data_path, cfg, tokenizer)
    from_batches = collect([(texts[i:i + 10], labels[i:i + 10]) for i in range(0, len(texts), 10)], cfg, tokenizer)

    def forward_loop(feed) -> None:
        for i in range(0, len(texts), 7):
            feed(texts[i:i + 7], [cfg.labels.index(lab) for lab in labels[i:i + 7]])

    from_loop = collect(forward_loop, cfg, tokenizer)
    from_dicts = collect([{"text": texts, "label": labels}], cfg, tokenizer, samples=50)
    for other in (from_batches, from_loop):
        assert np.array_equal(other.labels, from_file.labels)
        assert all(np.array_equal(a, b) for a, b in zip(other.tokens, from_file.tokens, strict=True))
    assert len(from_dicts) == 50


def test_no_usable_rows(model_path: Path, tmp_path: Path) -> None:
    exported, tokenizer = load_model(model_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(BfexportError, match="no usable rows"):
        collect(empty, exported.config, tokenizer)
    with pytest.raises(BfexportError, match="no usable rows"):
        collect([(["  ", ""], None)], exported.config, tokenizer)


def test_unknown_label_is_refused(model_path: Path) -> None:
    exported, tokenizer = load_model(model_path)
    with pytest.raises(BfexportError, match="not one of the model's labels"):
        collect([(["some text"], ["delta"])], exported.config, tokenizer)
