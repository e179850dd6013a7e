"""Latency calibration logic with a fake runtime whose costs are deterministic: the lookup
table, the search on it, verification and the tightening loop. No wall-clock assertions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from calibration import LatencyTarget, calibrate
from calibration.api import load_model
from calibration.evaluate import Config, Evaluator
from calibration.inputs import collect
from calibration.latency import LatencyRuntime, OrtCpuRuntime, latency_groups, make_batches, profile
from calibration.report import write_report


class FakeRuntime(LatencyRuntime):
    """ms = 1 + 0.01 * padded tokens + sum over layers of per_head[l] * (batch's largest k in l),
    times `penalty` for configurations that are not forced budgets (tau = 1 everywhere)."""

    name = "fake"
    per_head: Sequence[float] = (0.5, 0.5)
    penalty = 1.0

    def __init__(self, exported: Any, threads: int | None = None) -> None:
        super().__init__(exported, threads)
        self.clf = OnnxClassifier(exported)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def cost(self, ids: np.ndarray, mask: np.ndarray, c: Config) -> float:
        counts = self.clf.run(ids, mask, thresholds=c.thresholds, caps=c.caps)["head_counts"]
        ms = 1.0 + 0.01 * ids.size + sum(p * int(k) for p, k in zip(self.per_head, counts.max(0), strict=True))
        return ms * (1.0 if all(t == 1.0 for t in c.thresholds) else self.penalty)

    def measure(self, batches: Sequence, configs: Sequence[Config], repeats: int, warmup: int = 1) -> np.ndarray:
        one = np.array([[self.cost(ids, mask, c) for ids, mask in batches] for c in configs])
        return np.broadcast_to(one, (repeats, *one.shape)).copy()


class PerLayerFake(FakeRuntime):
    per_head = (0.2, 0.9)


class OptimisticTableFake(FakeRuntime):
    penalty = 1.08  # real candidates cost 8% more than the forced-budget profile predicts


@pytest.fixture(scope="module")
def setup(model_path: Path, data_path: Path) -> dict[str, Any]:
    exported, tokenizer = load_model(model_path)
    cal = collect(data_path, exported.config, tokenizer)
    return {"exported": exported, "cal": cal, "evaluator": Evaluator(exported, cal)}


@pytest.mark.parametrize("runtime, mode", [(FakeRuntime, "uniform"), (PerLayerFake, "per-layer")])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_table_predicts_the_fake_exactly(setup: dict, runtime: type, mode: str, batch_size: int) -> None:
    exported, cal, ev = setup["exported"], setup["cal"], setup["evaluator"]
    rt = runtime(exported)
    groups = latency_groups(len(cal), batch_size, 12)
    batches = make_batches(cal, groups)
    table = profile(rt, batches, groups, 2, 4, repeats=2, mode=mode)
    for c in (Config((0.3, 0.8), (4, 2)), Config((0.9, 0.1), (3, 4)), Config((1.0, 1.0), (1, 4))):
        heads = ev.outcomes([c])[0].heads
        truth = np.array([rt.cost(ids, mask, c) for ids, mask in batches])
        assert np.allclose(table.predict(heads), truth)
    assert table.forced(4, 50) == pytest.approx(np.percentile(table.all_heads, 50))
    assert len(table.to_json()["layer_delta_ms"]) == 2


def test_latency_target_met_and_verified(setup: dict, model_path: Path, data_path: Path, tmp_path: Path) -> None:
    rt = FakeRuntime(setup["exported"])
    groups = latency_groups(len(setup["cal"]), 1, 48)
    full = np.percentile([rt.cost(i, m, Config((1.0, 1.0), (4, 4))) for i, m in make_batches(setup["cal"], groups)], 50)
    target = 0.8 * full
    r = calibrate(model_path, data_path, LatencyTarget(target, 50), runtime_factory=FakeRuntime, verify_sessions=5)
    lat = r.latency_ms
    assert r.target_met and lat["met"] and lat["p50"] <= target
    assert lat["p50"] >= target * 0.95  # in the band: the budget was used
    assert lat["sessions"] == 5 and lat["sessions_meeting_target"] == 5
    assert {"p50", "p90", "p95", "p99", "spread", "all_heads", "speedup", "per_session"} <= set(lat)
    assert lat["all_heads"]["p50"] == pytest.approx(full)
    assert r.baselines["global_threshold"] is None or r.accuracy >= r.baselines["global_threshold"]["objective"]
    assert "latency_ms" in r.to_json() and r.report["latency_table"]["mode"] == "uniform"
    report = write_report(r, tmp_path / "rep")
    assert {p.name for p in report.iterdir()} == {"pareto.png", "head_usage.png", "report.json"}


def test_optimistic_table_is_corrected_by_verification(setup: dict, model_path: Path, data_path: Path) -> None:
    rt = OptimisticTableFake(setup["exported"])
    groups = latency_groups(len(setup["cal"]), 1, 48)
    full = np.percentile([rt.cost(i, m, Config((1.0, 1.0), (4, 4))) for i, m in make_batches(setup["cal"], groups)], 50)
    r = calibrate(model_path, data_path, LatencyTarget(0.85 * full, 50), runtime_factory=OptimisticTableFake,
                  verify_sessions=2)
    attempts = r.search["attempts"]
    assert len(attempts) >= 2 and attempts[1]["limit_ms"] < attempts[0]["limit_ms"]
    assert r.target_met == (r.latency_ms["p50"] <= 0.85 * full)


def test_relative_latency_target(model_path: Path, data_path: Path) -> None:
    r = calibrate(model_path, data_path, LatencyTarget(fraction=0.8), runtime_factory=FakeRuntime, verify_sessions=1)
    assert r.target["fraction_of_all_heads"] == 0.8
    assert r.target["ms"] == pytest.approx(0.8 * r.latency_ms["all_heads"]["p50"])
    assert r.target_met
    with pytest.raises(BfexportError, match=r"1\.1 x all heads\) is at or above"):
        calibrate(model_path, data_path, LatencyTarget(fraction=1.1), runtime_factory=FakeRuntime)


def test_infeasible_latency_target_states_the_range(model_path: Path, data_path: Path) -> None:
    with pytest.raises(BfexportError, match=r"infeasible.*feasible range .* ms .* to .* ms \(all heads\)"):
        calibrate(model_path, data_path, LatencyTarget(0.01), runtime_factory=FakeRuntime)
    with pytest.raises(BfexportError, match="at or above the all-heads latency"):
        calibrate(model_path, data_path, LatencyTarget(1e6), runtime_factory=FakeRuntime)


def test_batch_larger_than_data_is_refused() -> None:
    with pytest.raises(BfexportError, match="needs at least 8 samples"):
        latency_groups(5, 8, 10)


def test_ort_runtime_measures_interleaved(setup: dict) -> None:
    """Shape and sanity only: real timings are not asserted."""
    rt = OrtCpuRuntime(setup["exported"], threads=1)
    batches = make_batches(setup["cal"], latency_groups(len(setup["cal"]), 2, 3))
    ms = rt.measure(batches, [Config((1.0, 1.0), (4, 4)), Config((1.0, 1.0), (1, 1))], repeats=2)
    assert ms.shape == (2, 2, 3) and (ms > 0).all()
    assert rt.describe()["name"] == "ort-cpu"
