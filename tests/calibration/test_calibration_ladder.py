"""A ladder of targets from one calibration run: each rung is at least as good as the
single-target calibration at its target (the ladder's most accurate point that fits), the run
shares the path cache (fewer rows run than separate runs), the ladder file loads strictly, and
`bfexport calibrate --ladder-*` writes it or refuses in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bfexport.cli import main
from bfexport.errors import BfexportError
from bfexport.ladder_result import LadderResult, Rung
from calibration import FlopsTarget, LatencyTarget, calibrate, load_model
from calibration.ladder import MERGED, best_points, calibrate_ladder
from tests.calibration.test_calibration_latency import FakeRuntime

VALUES = (1.0, 0.9, 0.8, 0.7)


@pytest.fixture(scope="module")
def flops_ladder(model_path: Path, data_path: Path) -> tuple:
    return calibrate_ladder(model_path, data_path, [0.8, 1.0, 0.7, 0.9], runtime_factory=FakeRuntime)


def test_each_flops_rung_is_at_least_the_single_target_calibration(flops_ladder: tuple, model_path: Path,
                                                                    data_path: Path) -> None:
    ladder, results = flops_ladder
    targets = [r.target for r in ladder.rungs]
    assert targets == sorted(targets, reverse=True) and targets[0] == 1.0  # top first
    rows_alone = 0
    for result, value in zip(results[1:], VALUES[1:], strict=True):
        single = calibrate(model_path, data_path, FlopsTarget(value))
        rows_alone += single.search["rows_run"]
        assert result is not None and (result.thresholds, result.caps) == (single.thresholds, single.caps)
        served = [r for r in ladder.rungs if r.target == value or any(n == f"{MERGED} {value:g} (the same point)"
                                                                      for n in r.notes)]
        assert len(served) == 1 and served[0].accuracy is not None and single.accuracy is not None
        assert served[0].accuracy >= single.accuracy and served[0].flops_ratio <= value
    assert ladder.search["rows_run"] < rows_alone  # the path cache is shared across rungs


def point(target: float, accuracy: float, cost: float, caps: list[int]) -> Rung:
    """A rung whose FLOPs ratio and p50 latency (top rung: 1 ms) are both `cost`."""
    return Rung(target=target, thresholds=[0.5, 0.5], caps=caps, latency_ms={"p50": cost, "p99": 2 * cost},
                accuracy=accuracy, agreement=1.0, flops_ratio=cost, mean_heads_per_layer=[], target_met=True,
                full=target == 1.0)


@pytest.mark.parametrize("unit", ["flops_ratio", "latency_fraction"])
def test_a_rung_takes_a_more_accurate_point_that_fits_and_repeats_merge(unit: str) -> None:
    # the shipped model's ladder once: the 0.85 search found a point cheaper and less accurate than the 0.75 one
    top, r85, r75, r65 = (point(1.0, 0.80, 1.0, [4, 4]), point(0.85, 0.82, 0.67, [4, 1]),
                          point(0.75, 0.823, 0.73, [4, 3]), point(0.65, 0.81, 0.63, [2, 1]))
    out = best_points([top, r85, r75, r65], unit)
    assert [(r.target, r.caps) for r in out] == [(1.0, [4, 4]), (0.85, [4, 3]), (0.65, [2, 1])]
    assert any(n.startswith("took the point calibrated for target 0.75") for n in out[1].notes)
    assert f"{MERGED} 0.75 (the same point)" in out[1].notes
    costs = [r.flops_ratio for r in out]
    assert costs == sorted(costs, reverse=True)  # every step down is cheaper


def test_a_rung_keeps_its_own_point_unless_another_fits_and_scores_higher() -> None:
    top, r8, r6 = point(1.0, 0.80, 1.0, [4, 4]), point(0.8, 0.79, 0.78, [4, 2]), point(0.6, 0.78, 0.59, [2, 1])
    assert best_points([top, r8, r6], "flops_ratio") == [top, r8, r6]  # already ordered: nothing changes
    tie = point(0.6, 0.79, 0.55, [1, 1])  # as accurate as the 0.8 rung and cheaper: the 0.8 rung takes it
    out = best_points([top, r8, tie], "flops_ratio")
    assert [r.caps for r in out] == [[4, 4], [1, 1]]


def test_top_rung_is_the_full_model_and_every_rung_is_timed(flops_ladder: tuple) -> None:
    ladder, results = flops_ladder
    top = ladder.rungs[0]
    assert top.full and results[0] is None and top.thresholds == [1.0, 1.0] and top.caps == [4, 4]
    assert all(r.latency_ms["p50"] > 0 and r.latency_ms["p99"] >= r.latency_ms["p50"] for r in ladder.rungs)
    assert ladder.measurement["interleaved"] and ladder.measurement["sessions"] == 3
    # FakeRuntime charges per head in the batch's largest k: the full rung is the slowest
    assert top.latency_ms["p50"] == max(r.latency_ms["p50"] for r in ladder.rungs)


def test_latency_fraction_rungs_equal_single_target_calibrations(model_path: Path, data_path: Path) -> None:
    ladder, _ = calibrate_ladder(model_path, data_path, [1.0, 0.8], unit="latency_fraction",
                                 runtime_factory=FakeRuntime, verify_sessions=1, measure_sessions=1)
    single = calibrate(model_path, data_path, LatencyTarget(fraction=0.8), runtime_factory=FakeRuntime,
                       verify_sessions=1)
    rung = ladder.rungs[1]
    assert (rung.thresholds, rung.caps, rung.target_met) == (single.thresholds, single.caps, single.target_met)
    assert ladder.unit == "latency_fraction" and rung.target_met


def test_ladder_file_round_trips_and_loads_strictly(flops_ladder: tuple, model_path: Path, other_model_path: Path,
                                                    tmp_path: Path) -> None:
    ladder, _ = flops_ladder
    path = ladder.save(tmp_path / "ladder.json")
    loaded = LadderResult.load(path)
    assert loaded.to_json() == ladder.to_json()
    loaded.check_model(load_model(model_path)[0])
    with pytest.raises(BfexportError, match="made for another model"):
        loaded.check_model(load_model(other_model_path)[0])
    raw = ladder.to_json()
    for change, message in ((lambda d: d["rungs"][1].update(caps=[2.9, 1]), "head caps must be integers"),
                            (lambda d: d["rungs"].reverse(), "highest target to the lowest"),
                            (lambda d: d["rungs"][0]["latency_ms"].update(p99=float("nan")), "positive finite"),
                            (lambda d: d.update(format="bfexport.calibration/1"), "not a bfexport ladder"),
                            (lambda d: d.update(rungs=[]), "non-empty list")):
        bad = json.loads(json.dumps(raw))
        change(bad)
        with pytest.raises(BfexportError, match=message):
            LadderResult.from_json(bad)


@pytest.mark.parametrize("values", [[1.0, 1.0], [0.0, 0.5], [1.5], []])
def test_bad_ladder_values_are_refused(model_path: Path, data_path: Path, values: list[float]) -> None:
    with pytest.raises(BfexportError, match="ladder values"):
        calibrate_ladder(model_path, data_path, values)


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["bfexport", "calibrate", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_one_ladder_file(monkeypatch, capsys, model_path: Path, data_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "ladder.json"
    code, stdout, _ = run(monkeypatch, capsys, model_path, "--data", data_path, "--ladder-flops", "1.0,0.8", "-o", out,
                          "--json")
    assert code == 0
    shown, saved = json.loads(stdout), LadderResult.load(out)
    assert [r["target"] for r in shown["rungs"]] == [1.0, 0.8] == [r.target for r in saved.rungs]
    code, _, err = run(monkeypatch, capsys, model_path, "--data", data_path, "--ladder-flops", "1.0,0.8", "-o", out)
    assert code == 2 and "--force" in err  # an existing ladder is not overwritten


@pytest.mark.parametrize("args, message", [
    (["--ladder-flops", "1.0,0.8", "--target-flops", "0.7"], "give no --target-*"),
    (["--ladder-flops", "1.0,x"], "comma-separated numbers"),
    (["--ladder-flops", "1.0", "--ladder-latency-fraction", "0.5"], "give one of"),
    (["--ladder-flops", "1.0,0.8", "--report", "rep"], "apply to a single target"),
    (["--ladder-flops", "1.0,0.8", "--percentile", "99"], "latency targets only"),
])
def test_cli_refuses_bad_ladder_options_in_one_line(monkeypatch, capsys, model_path: Path, data_path: Path,
                                                    tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run(monkeypatch, capsys, model_path, "--data", data_path, "-o", tmp_path / "l.json", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "l.json").exists()
