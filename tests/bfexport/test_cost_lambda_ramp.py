"""The cost weight's ramp: it grows the penalty from 0, so a ramped run ends with more heads than a
constant one; without a ramp the full weight applies from the first step; a share outside [0, 1] is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from bfexport.errors import BfexportError
from bfexport.train import BUDGET_SIGNALS, TrainConfig, ramped_cost_lambda, train
from tests.bfexport.test_train import TINY, examples

SMALL = {**TINY, "n_heads": 4, "d_model": 16, "n_layers": 2, "epochs": 3, "explore_frac": 0.3, "lr": 0.01,
         "cost_lambda": 2.0}


def _final_mean_heads(checkpoint: Path) -> float:
    history = json.loads((checkpoint / "metrics.json").read_text())["history"]
    return float(history[-1]["mean_heads"])


@pytest.mark.parametrize("signal", BUDGET_SIGNALS)
def test_a_ramped_penalty_leaves_more_heads_than_a_constant_one(signal: str, tmp_path: Path) -> None:
    for name, ramp in (("constant", 0.0), ("ramped", 1.0)):
        train(examples(), examples(), TrainConfig(**{**SMALL, "budget_signal": signal, "cost_lambda_ramp": ramp}),
              tmp_path / name, show_progress=False)
    assert _final_mean_heads(tmp_path / "ramped") > _final_mean_heads(tmp_path / "constant")


def test_the_weight_grows_linearly_over_the_ramp_and_is_full_from_the_start_without_one() -> None:
    ramped = TrainConfig(cost_lambda=2.0, cost_lambda_ramp=0.5)
    assert [ramped_cost_lambda(ramped, s, 100) for s in (0, 25, 50, 99)] == [0.0, 1.0, 2.0, 2.0]
    constant = TrainConfig(cost_lambda=2.0, cost_lambda_ramp=0.0)
    assert [ramped_cost_lambda(constant, s, 100) for s in (0, 50)] == [2.0, 2.0]


@pytest.mark.parametrize("ramp", [-0.1, 1.5, float("nan")])
def test_a_ramp_outside_the_unit_interval_is_refused(ramp: float, tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match="cost_lambda_ramp must be in"):
        train(examples(), examples(), TrainConfig(**{**TINY, "cost_lambda_ramp": ramp}), tmp_path / "x",
              show_progress=False)
    assert not (tmp_path / "x").exists()


def test_the_cli_refuses_a_ramp_above_one_on_one_line(bfexport: Callable[..., Any], data_file: Path,
                                                      tmp_path: Path) -> None:
    result = bfexport("train", "--train", data_file, "--validation", data_file, "-o", tmp_path / "c",
                      "--cost-lambda-ramp", "2", "--epochs", "1")
    assert result.returncode == 2
    assert "--cost-lambda-ramp" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists()
