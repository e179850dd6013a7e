"""The budget controller (NAME_slo) on a real tritonserver: at low load every text runs the top rung,
a burst moves it down the ladder, every answer equals OnnxClassifier at the rung it reports, a
request's own budget is served unchanged (rung -1), and the server leaves nothing behind.
Skipped with the reason when no server can start (CI sets BFEXPORT_REQUIRE_SERVER=1: a failure)."""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bfexport.runtime import OnnxClassifier
from converters.triton import DeployOptions, deploy
from converters.triton.live_cases import Reference
from converters.triton.live_check import bfexport_models, served_copy
from converters.triton.schema import parse_config, render_config
from converters.triton.server import ServerBinary, StubPython, TritonServer, running, shm_regions
from tests.converters.triton.ladders import tiny_ladder
from tests.converters.triton.test_live_server import server_env  # noqa: F401 - the fixture
from tests.factories import TEXTS


@pytest.fixture(scope="module")
def slo_repo(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> dict:
    work = tmp_path_factory.mktemp("slo-live")
    ckpt, onnx_path, ladder = tiny_ladder(work, tokenizer, [1.0, 0.85, 0.7])
    deploy(ckpt, work / "repo", DeployOptions(name="m", ladder=ladder, slo_p99_ms=1000.0))
    config = parse_config((work / "repo" / "m_slo" / "config.pbtxt").read_text())
    return {"repo": work / "repo", "onnx": onnx_path, "rungs": json.loads(config.parameters["ladder"].string_value)}


def _infer(client, text: str, **budget: np.ndarray) -> dict:
    return client.infer("m_slo", {"text": np.array([[text.encode()]], dtype=object), **budget})


def test_controller_serves_rungs_on_a_real_server(server_env: tuple[ServerBinary, StubPython],  # noqa: F811
                                                  slo_repo: dict) -> None:
    binary, stub = server_env
    clf = OnnxClassifier(slo_repo["onnx"])
    reference, layers = Reference(clf, None), clf.config.n_layers
    rungs = slo_repo["rungs"]
    assert len(rungs) >= 2, "the tiny model's ladder needs two distinct rungs for this test"
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(96)]
    regions = shm_regions()
    with tempfile.TemporaryDirectory() as work:
        copy = served_copy(slo_repo["repo"], bfexport_models(slo_repo["repo"]), Path(work), not binary.has_onnxruntime)
        # a queue of 4 steps down however fast this tiny model serves it (by default a queue counts only when
        # the rung would take over 0.8 x target to serve it): the burst moves the controller on any machine
        path = copy / "m_slo" / "config.pbtxt"
        config = parse_config(path.read_text())
        config.parameters["controller"].string_value = json.dumps({"queue_down_at": 0})
        path.write_text(render_config(config, "# test_slo_live: a queue always counts\n"))
        with TritonServer.start(copy, binary, stub) as server:
            server.load("m", "m_tokenizer", "m_slo")
            client = server.client()
            quiet = [_infer(client, t) for t in texts[:5]]
            own = {"budget_thresholds": np.full((1, layers), 0.3, np.float32),
                   "head_caps": np.full((1, layers), 2, np.int64)}
            mine = _infer(client, texts[5], **own)
            with ThreadPoolExecutor(24) as pool:  # a burst: Triton hands the instance batches of waiting requests
                burst = list(pool.map(lambda t: _infer(server.client(), t), texts * 2))
            stubs = sorted(server.stubs)
        pid = server.pid
    assert [int(r["rung"][0][0]) for r in quiet] == [0] * 5
    assert int(mine["rung"][0][0]) == -1
    expected = reference.run(texts[5], own["budget_thresholds"][0], own["head_caps"][0])
    assert np.allclose(mine["logits"][0], expected["logits"][0], atol=1e-4)
    assert np.array_equal(mine["head_counts"][0], expected["head_counts"][0])
    seen = {int(r["rung"][0][0]) for r in burst}
    assert max(seen) >= 1, f"a burst of 192 requests from 24 threads never moved the controller: rungs {seen}"
    for text, result in zip([*texts[:5], *texts * 2], [*quiet, *burst], strict=True):
        rung = rungs[int(result["rung"][0][0])]
        want = reference.run(text, np.asarray(rung["thresholds"], np.float32), np.asarray(rung["caps"], np.int64))
        assert np.allclose(result["logits"][0], want["logits"][0], atol=1e-4)
        assert np.array_equal(result["head_counts"][0], want["head_counts"][0])
    assert not running(pid) and not any(running(p) for p in stubs) and shm_regions() <= regions
