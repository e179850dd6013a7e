"""validate's verdict: no PASS for NaN logits or changed fp32 predictions; --atol/--rtol; and
without --data it checks texts the file's own tokenizer produces, saying how many rows it used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bfexport.data import encode
from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from converters import AdaptiveExport, export_with_metadata, save_onnx
from converters.validate import synthetic_texts, validate


def _classifier(model, tokenizer, tmp_path: Path) -> OnnxClassifier:
    path = save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "m.onnx")
    return OnnxClassifier(path)


def _shifted(classifier: OnnxClassifier, monkeypatch: pytest.MonkeyPatch, shift) -> None:
    """Make the file's logits come out as shift(logits): a stand-in for a wrong export."""
    run = classifier.run

    def shifted_run(*args, **kwargs):
        out = run(*args, **kwargs)
        return {**out, "logits": shift(out["logits"].copy())}
    monkeypatch.setattr(classifier, "run", shifted_run)


def test_nan_logits_fail(model, tokenizer, texts, tmp_path: Path) -> None:
    with torch.no_grad():
        model.classifier.bias[1] = float("nan")  # PyTorch and ONNX Runtime both give NaN: |diff| is NaN
    report = validate(model, _classifier(model, tokenizer, tmp_path), texts[:6])
    assert not report.passed
    assert report.non_finite == report.samples and "NaN" in report.failures[0]
    assert json.dumps(report.to_dict(), allow_nan=False)  # the JSON report stays valid JSON


def test_a_changed_prediction_fails_in_fp32_even_within_tolerance(model, tokenizer, texts, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.no_grad():  # classes 0 and 1 tie exactly and lead: PyTorch's argmax is 0
        model.classifier.weight[1] = model.classifier.weight[0]
        model.classifier.bias[:2] = 10.0
    classifier = _classifier(model, tokenizer, tmp_path)

    def tip(logits: np.ndarray) -> np.ndarray:
        logits[:, 1] = logits[:, 0] + 1e-5  # well within 1e-4, but the argmax moves to class 1
        return logits
    _shifted(classifier, monkeypatch, tip)
    report = validate(model, classifier, texts[:6])
    assert report.max_abs_diff <= report.tolerance and report.head_selection_agreement == 1.0
    assert report.prediction_agreement == 0.0 and not report.passed
    assert report.failures == ["predictions differ (fp32)"]


def test_atol_and_rtol(model, tokenizer, texts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classifier, texts = _classifier(model, tokenizer, tmp_path), texts[:6]
    _shifted(classifier, monkeypatch, lambda logits: logits * 1.001)  # 0.1 % off
    ids, mask = encode(classifier.tokenizer, texts, classifier.config.max_length)
    reference = np.abs(model.predict(torch.from_numpy(ids), torch.from_numpy(mask)).logits.numpy())
    assert reference.max() * 1e-3 > 1e-4  # so the default atol alone fails
    assert not validate(model, classifier, texts).passed
    assert validate(model, classifier, texts, atol=1e-5, rtol=2e-3).passed
    assert validate(model, classifier, texts, atol=1.0).passed
    with pytest.raises(BfexportError, match="--rtol"):
        validate(model, classifier, texts, rtol=float("nan"))


def test_synthetic_texts_are_mixed_lengths_past_max_length(tokenizer) -> None:
    texts = synthetic_texts(tokenizer, 64, 32)
    lengths = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
    assert len(texts) == 64 and min(lengths) <= 4 and max(lengths) > 32
    assert texts == synthetic_texts(tokenizer, 64, 32)  # deterministic


def test_validate_without_data_runs_outside_the_source_tree(bfexport, checkpoint: Path, onnx_file: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = bfexport("validate", checkpoint, onnx_file, "--samples", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["data"] == {"source": None, "rows": 5, "rows_available": None}
    assert report["cases"]["batched"] == 5
    text = bfexport("validate", checkpoint, onnx_file, "--samples", "5")
    assert "5 synthetic texts (no --data)" in text.stderr


def test_validate_says_how_many_rows_of_the_data_it_checked(bfexport, checkpoint: Path, onnx_file: Path,
                                                            data_file: Path) -> None:
    result = bfexport("validate", checkpoint, onnx_file, "--data", data_file, "--samples", "5", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {"source": str(data_file), "rows": 5, "rows_available": 24}
    text = bfexport("validate", checkpoint, onnx_file, "--data", data_file, "--samples", "5")
    assert f"5 of 24 rows of {data_file}" in text.stderr.replace("\n", "")


def test_validate_cli_takes_atol_rtol(bfexport, checkpoint: Path, onnx_file: Path) -> None:
    result = bfexport("validate", checkpoint, onnx_file, "--samples", "4", "--atol", "1e-3", "--rtol", "1e-4",
                      "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["tolerance"], report["rtol"]) == (1e-3, 1e-4)
    bad = bfexport("validate", checkpoint, onnx_file, "--atol", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
