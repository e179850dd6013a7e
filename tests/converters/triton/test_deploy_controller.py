"""`deploy --ladder FILE --slo-p99-ms MS`: the controller directory NAME_slo is written, checked
offline, refused before any work for a ladder of another model; and controller_model.py, run
against a stand-in backend whose BLS calls are recorded, serves each batch at the controller's
rung, returns the rung per text, serves a request's own budget unchanged and isolates a bad request."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bfexport.checkpoint import save_checkpoint
from bfexport.errors import BfexportError
from bfexport.ladder_result import LadderResult
from converters.triton import DeployOptions, check_repository, deploy
from converters.triton.controller_dir import controller_file
from converters.triton.schema import parse_config, string_parameters
from tests.converters.triton import backend_stand_in
from tests.converters.triton.ladders import tiny_ladder
from tests.factories import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("slo")
    ckpt, _, ladder = tiny_ladder(work, tokenizer, [1.0, 0.9, 0.8])
    other = tiny_model(vocab_size=tokenizer.get_vocab_size(), seed=1)
    other_ckpt = save_checkpoint(other, work / "other", tokenizer_json=tokenizer.to_str())
    return {"work": work, "ckpt": ckpt, "ladder": ladder, "other": other_ckpt}


def test_deploy_writes_a_checked_controller(setup: dict[str, Path]) -> None:
    repo = setup["work"] / "repo"
    result = deploy(setup["ckpt"], repo, DeployOptions(name="m", ladder=setup["ladder"], slo_p99_ms=40.0))
    assert result.models == {"model": "m", "tokenizer": "m_tokenizer", "ensemble": "m_text", "controller": "m_slo"}
    for name in ("model.py", "budget_controller.py"):
        assert (repo / "m_slo" / "1" / name).read_bytes() == controller_file(name)
    config = parse_config((repo / "m_slo" / "config.pbtxt").read_text())
    params = string_parameters(config)
    ladder = LadderResult.load(setup["ladder"])
    rungs = json.loads(params["ladder"])
    assert params["classifier"] == "m" and params["tokenizer"] == "m_tokenizer"
    assert json.loads(params["slo_p99_ms"]) == 40
    assert rungs[0]["thresholds"] == ladder.rungs[0].thresholds and len(rungs) <= len(ladder.rungs)
    assert [o.name for o in config.output] == ["logits", "head_counts", "rung"] and config.max_batch_size == 8
    report = check_repository(repo)
    assert report.ok, report.errors()
    slo = next(m for m in report.models if m.name == "m_slo")
    assert any("controller files are bfexport's" in line for line in slo.passed)


def test_a_modified_controller_fails_the_check(setup: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    deploy(setup["ckpt"], repo, DeployOptions(name="m", ladder=setup["ladder"], slo_p99_ms=40.0))
    path = repo / "m_slo" / "1" / "budget_controller.py"
    path.write_bytes(path.read_bytes() + b"\nimport os\n")
    report = check_repository(repo)
    assert not report.ok and any("budget_controller.py is not the file bfexport writes" in e for e in report.errors())


def test_a_ladder_of_another_model_is_refused_before_anything_is_written(setup: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match="made for another model"):
        deploy(setup["other"], tmp_path / "repo", DeployOptions(name="o", ladder=setup["ladder"], slo_p99_ms=40.0))
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("options, message", [
    ({"ladder": "l.json"}, "go together"), ({"slo_p99_ms": 40.0}, "go together"),
    ({"ladder": "l.json", "slo_p99_ms": -1.0}, "positive number"),
    ({"ladder": "l.json", "slo_p99_ms": 40.0, "max_batch_size": 0}, "--max-batch-size >= 1"),
])
def test_bad_controller_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BfexportError, match=message):
        DeployOptions(**options)


# ---- controller_model.py against a stand-in backend with recorded BLS calls ------------------------------
LADDER = [{"thresholds": [1.0, 1.0], "caps": [4, 4]}, {"thresholds": [0.5, 0.5], "caps": [2, 2]},
          {"thresholds": [0.2, 0.2], "caps": [1, 1]}]


class Bls:
    """The models a BLS call reaches: a tokenizer that passes budget rows through (refusing a text
    "bad" with INVALID_ARG) and a classifier whose head_counts are the caps it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, np.ndarray]]] = []

    def run(self, model: str, inputs: dict[str, np.ndarray]) -> Any:
        self.calls.append((model, inputs))
        if model == "m_tokenizer":
            texts = [t.decode() for t in inputs["text"].reshape(-1)]
            if "bad" in texts:
                return backend_stand_in.InferenceResponse([], backend_stand_in.TritonError("text: bad", 3))
            n = len(texts)
            rows = {"row_thresholds": inputs.get("budget_thresholds", np.full((n, 2), 0.9, np.float32)),
                    "row_caps": inputs.get("head_caps", np.full((n, 2), 3, np.int64))}
            return backend_stand_in.InferenceResponse(
                [backend_stand_in.Tensor("input_ids", np.ones((n, 4), np.int64)),
                 backend_stand_in.Tensor("attention_mask", np.ones((n, 4), np.int64)),
                 *(backend_stand_in.Tensor(k, v) for k, v in rows.items())])
        n = len(inputs["input_ids"])
        return backend_stand_in.InferenceResponse(
            [backend_stand_in.Tensor("logits", inputs["budget_thresholds"].sum(1, keepdims=True)),
             backend_stand_in.Tensor("head_counts", inputs["head_caps"]),
             backend_stand_in.Tensor("input_rows", np.arange(n))])


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Bls]:
    bls = Bls()
    pb_utils = backend_stand_in.module()

    class InferenceRequest:
        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[Any]) -> None:
            self.model, self.inputs = model_name, {t.name(): t.as_numpy() for t in inputs}

        def exec(self) -> Any:
            return bls.run(self.model, self.inputs)

    class Logger:
        lines: list[str] = []

        @classmethod
        def log_info(cls, line: str) -> None:
            cls.lines.append(line)

    pb_utils.InferenceRequest = InferenceRequest  # type: ignore[attr-defined]
    pb_utils.Logger = Logger  # type: ignore[attr-defined]
    pb_utils.get_output_tensor_by_name = lambda response, name: backend_stand_in.Tensor(  # type: ignore[attr-defined]
        name, response.tensors[name])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    monkeypatch.setitem(sys.modules, "budget_controller", importlib.import_module("converters.triton.controller"))
    monkeypatch.delitem(sys.modules, "converters.triton.controller_model", raising=False)
    module = importlib.import_module("converters.triton.controller_model")
    instance = module.TritonPythonModel()
    params = {"classifier": "m", "tokenizer": "m_tokenizer", "ladder": json.dumps(LADDER), "slo_p99_ms": "50",
              "controller": json.dumps({"queue_down": 3, "queue_up": 1, "dwell_down_s": 0, "dwell_up_s": 0})}
    instance.initialize({"model_config": json.dumps({"parameters": {k: {"string_value": v}
                                                                    for k, v in params.items()}}),
                         "model_instance_name": "m_slo_0"})
    yield instance, bls, Logger
    sys.modules.pop("converters.triton.controller_model", None)


def request(text: str, **budgets: np.ndarray) -> Any:
    return backend_stand_in.Request(text=np.array([[text.encode()]], dtype=object), **budgets)


def test_low_load_runs_the_top_rung_and_returns_it(served: tuple) -> None:
    instance, bls, _ = served
    (response,) = instance.execute([request("a package")])
    assert not response.has_error() and response.tensors["rung"].tolist() == [[0]]
    classifier = [inputs for model, inputs in bls.calls if model == "m"][-1]
    assert classifier["budget_thresholds"].tolist() == [[1.0, 1.0]] and classifier["head_caps"].tolist() == [[4, 4]]


def test_a_queue_runs_a_cheaper_rung_for_the_whole_batch_in_one_call(served: tuple) -> None:
    instance, bls, logger = served
    responses = instance.execute([request(f"text {i}") for i in range(4)])
    assert [r.tensors["rung"].tolist() for r in responses] == [[[1]]] * 4
    assert [r.tensors["head_counts"].tolist() for r in responses] == [[[2, 2]]] * 4
    assert [model for model, _ in bls.calls] == ["m_tokenizer", "m"]  # one tokenizer and one classifier call
    assert any('"moves_down": 1' in line and '"per_rung": [0, 4, 0]' in line for line in logger.lines)


def test_a_request_with_its_own_budget_is_served_with_it_unchanged(served: tuple) -> None:
    instance, bls, _ = served
    own = {"budget_thresholds": np.array([[0.33, 0.66]], np.float32), "head_caps": np.array([[3, 1]], np.int64)}
    responses = instance.execute([request("x", **own), *(request(f"t{i}") for i in range(3))])
    assert responses[0].tensors["rung"].tolist() == [[-1]] and responses[0].tensors["head_counts"].tolist() == [[3, 1]]
    assert np.array_equal(bls.calls[0][1]["budget_thresholds"], own["budget_thresholds"])
    assert [r.tensors["rung"].tolist() for r in responses[1:]] == [[[1]]] * 3
    assert instance.controller.counters.own_budget == 1


def test_a_bad_request_gets_its_own_error_and_the_others_their_answers(served: tuple) -> None:
    instance, _, _ = served
    responses = instance.execute([request("fine"), request("bad")])
    assert not responses[0].has_error() and responses[0].tensors["rung"].tolist() == [[0]]
    assert responses[1].has_error() and responses[1].error().code() == 3
