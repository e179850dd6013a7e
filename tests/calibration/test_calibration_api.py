"""calibrate() with FLOP targets on the tiny model: targets met, baseline beaten or tied,
infeasible targets refused with the feasible range, calibration.json and --write-model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bfexport import cost
from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from bfexport.summary import run_data
from calibration import CalibrationResult, FlopsTarget, calibrate, fingerprint, write_model
from converters.onnx import load_exported

TARGETS = (0.7, 0.8, 0.9)


@pytest.fixture(scope="module")
def results(model_path: Path, data_path: Path) -> dict[float, CalibrationResult]:
    return {t: calibrate(model_path, data_path, FlopsTarget(t)) for t in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_flops_target_met_by_the_best_and_cheapest_point_tried(results: dict, target: float) -> None:
    """Within the band when that is as accurate; below it only for a cheaper point of equal
    accuracy (issue 11: among equals the cheapest wins), and then a note says so."""
    r = results[target]
    assert r.target_met and r.achieved_flops_ratio <= target
    chosen = r.report["chosen"]["objective"]
    under = [p for p in r.report["points"] if p["cost"] <= target]
    assert not any(p["objective"] > chosen or (p["objective"] == chosen and p["cost"] < r.achieved_flops_ratio)
                   for p in under)
    if r.within_tolerance:
        assert target - 0.02 <= r.achieved_flops_ratio and not r.notes
    else:
        assert [n for n in r.notes if "below the band" in n]


@pytest.mark.parametrize("target", TARGETS)
def test_reported_numbers_match_an_independent_run(results: dict, target: float, model_path: Path,
                                                   texts: list[str], labels: list[str]) -> None:
    """Re-run the chosen thresholds through OnnxClassifier and bfexport.cost: same FLOPs, same accuracy."""
    r = results[target]
    clf = OnnxClassifier(model_path)
    out = run_data(lambda i, m: clf.run(i, m, thresholds=r.thresholds, caps=r.caps), clf.tokenizer, clf.config, texts)
    assert cost.flops_ratio(clf.config, out["lengths"], out["head_counts"]) == pytest.approx(r.achieved_flops_ratio)
    truth = np.array([clf.config.labels.index(lab) for lab in labels])
    assert float((out["logits"].argmax(-1) == truth).mean()) == pytest.approx(r.accuracy)


@pytest.mark.parametrize("target", TARGETS)
def test_per_layer_search_ties_or_beats_global_threshold(results: dict, target: float) -> None:
    r = results[target]
    base = r.baselines["global_threshold"]
    assert base is not None and base["cost"] <= target
    assert r.accuracy >= base["objective"]
    # and every global threshold that costs the same or more (but meets the target) is no better
    for g in r.report["global"]:
        if r.achieved_flops_ratio <= g["flops_ratio"] <= target:
            assert r.accuracy >= g["objective"]


def test_search_wins_somewhere(results: dict) -> None:
    assert any(r.accuracy > r.baselines["global_threshold"]["objective"] for r in results.values())


@pytest.mark.parametrize("ratio", [0.05, 1.5])
def test_infeasible_target_states_the_range(model_path: Path, data_path: Path, ratio: float) -> None:
    with pytest.raises(BfexportError) as caught:
        calibrate(model_path, data_path, FlopsTarget(ratio))
    message = str(caught.value)
    assert "feasible range" in message and "1.000 (dense)" in message and "\n" not in message
    assert ("infeasible" in message) if ratio < 1 else ("above the dense model" in message)


def test_calibration_json_round_trip(results: dict, tmp_path: Path) -> None:
    r = results[0.8]
    path = r.save(tmp_path / "calibration.json")
    raw = json.loads(path.read_text())
    for key in ("thresholds", "caps", "achieved_flops_ratio", "accuracy", "agreement", "target", "model",
                "machine", "runtime", "baselines", "search"):
        assert key in raw, key
    assert "latency_ms" not in raw and "report" not in raw
    assert len(raw["thresholds"]) == len(raw["caps"]) == 2
    assert raw["target"] == {"kind": "flops", "ratio": 0.8, "tolerance": 0.02}
    assert set(raw["machine"]["versions"]) >= {"torch", "onnx", "onnxruntime"}
    loaded = CalibrationResult.load(path)
    assert loaded.to_json() == r.to_json()


def test_broken_calibration_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "bfexport.calibration/1", "thresholds": [0.5]}))
    with pytest.raises(BfexportError, match="missing"):
        CalibrationResult.load(path)


def test_write_model_changes_defaults_consistently(results: dict, model_path: Path, tmp_path: Path,
                                                   texts: list[str]) -> None:
    r = results[0.8]
    out = write_model(r, model_path, tmp_path / "calibrated.onnx")
    written = load_exported(out)
    assert written.default_thresholds == pytest.approx(r.thresholds)
    assert written.default_caps == r.caps
    assert written.config.budget_thresholds == pytest.approx(r.thresholds)
    assert written.config.head_caps == r.caps
    assert fingerprint(written) == fingerprint(load_exported(model_path)) == r.model["fingerprint"]
    # the new defaults do what passing the thresholds explicitly does on the original
    new, old = OnnxClassifier(out), OnnxClassifier(model_path)
    a = run_data(new.run, new.tokenizer, new.config, texts)
    b = run_data(lambda i, m: old.run(i, m, thresholds=r.thresholds, caps=r.caps), old.tokenizer, old.config, texts)
    assert np.array_equal(a["head_counts"], b["head_counts"])
    assert np.allclose(a["logits"], b["logits"], atol=1e-5)


def test_calibration_from_another_model_is_refused(results: dict, other_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match="another model"):
        write_model(results[0.8], other_model_path, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_dense_flavor_has_nothing_to_calibrate(dense_model_path: Path, data_path: Path) -> None:
    with pytest.raises(BfexportError, match="no budget inputs"):
        calibrate(dense_model_path, data_path, FlopsTarget(0.8))


def test_unlabelled_data_optimizes_agreement(model_path: Path, texts: list[str]) -> None:
    batches = [(texts[i:i + 16], None) for i in range(0, len(texts), 16)]
    r = calibrate(model_path, batches, FlopsTarget(0.8))
    assert r.objective == "agreement" and r.accuracy is None
    assert 0.78 <= r.achieved_flops_ratio <= 0.8
    assert r.agreement >= r.baselines["global_threshold"]["agreement"]
