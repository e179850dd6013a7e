"""`bfexport deploy --check DIR --server` against a real tritonserver (the nvidia-pytriton wheel of
the `serve` extra, or BFEXPORT_STUB_PYTHON's environment): every case matches OnnxClassifier, bad
requests get 400, and neither success nor Ctrl-C leaves a server, stub process or shared-memory
region behind. Skipped, with the reason, when no server can start here; CI sets
BFEXPORT_REQUIRE_SERVER=1, which turns that skip into a failure."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bfexport.cli import run
from bfexport.errors import BfexportError
from converters.triton.http_client import TritonClient
from converters.triton.server import (
    ServerBinary,
    StubPython,
    TritonServer,
    check_stub_python,
    child_processes,
    find_server,
    free_ports,
    running,
    shm_regions,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def server_env() -> tuple[ServerBinary, StubPython]:
    try:
        stub = check_stub_python(os.environ.get("BFEXPORT_STUB_PYTHON"))
        return find_server(None, stub), stub
    except BfexportError as e:
        if os.environ.get("BFEXPORT_REQUIRE_SERVER"):
            pytest.fail(f"BFEXPORT_REQUIRE_SERVER is set but no Triton server can start: {e}")
        pytest.skip(f"no Triton server can start here: {e}")


def test_live_check_matches_onnx_classifier_and_answers_bad_requests_with_400(
        server_env: tuple[ServerBinary, StubPython], tiny_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regions = shm_regions()
    code = run(["deploy", "--check", str(tiny_repo), "--server", "--threads", "4", "--requests", "25", "--json",
                "--stub-python", str(server_env[1].executable)])
    out = json.loads(capsys.readouterr().out)
    live = out["server"]
    assert code == 0 and out["ok"] and live["ok"], live["errors"]
    cases = live["cases"]
    assert {"text, default budget", "text, per-request budget", "text, per-row budget", "ids, default budget",
            "ids, per-request budget", "concurrent, 4 threads x 25 requests"} <= set(cases)
    assert all(c["rows"] > 0 and c["mismatches"] == 0 and c["errors"] == 0 for c in cases.values())
    assert cases["concurrent, 4 threads x 25 requests"]["rows"] == 100
    bad = [line for line in live["passed"] if line.startswith("bad request")]
    assert len(bad) == 10 and all(": 400 " in line for line in bad)
    assert any("budget_thresholds must lie in (0, 1]" in line for line in bad)
    assert "server and models healthy after the bad requests" in live["passed"]
    assert not running(live["server"]["pid"]) and not any(running(p) for p in live["server"]["stubs"])
    assert shm_regions() <= regions
    assert live["server"]["onnxruntime_backend"] or "no onnxruntime backend" in live["notes"][0]


def test_a_stub_environment_with_numpy_2_is_refused_in_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '{\"version\": \"3.11\", \"numpy\": \"2.1.0\", \"prefix\": \"/x\"}'\n")
    fake.chmod(0o755)
    assert run(["deploy", "--check", str(tmp_path), "--server", "--stub-python", str(fake)]) == 2
    err = capsys.readouterr().err.strip()
    assert "has numpy 2.1.0; this Triton build's python backend needs numpy < 2" in err and "\n" not in err


# Ctrl-C as in a terminal, even when the tests run in the background (a shell without job control
# starts background commands with SIGINT ignored, and Python then installs no KeyboardInterrupt).
CTRL_C_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "


def test_ctrl_c_during_the_live_check_leaves_no_server_stub_or_shared_memory(
        server_env: tuple[ServerBinary, StubPython], tiny_repo: Path) -> None:
    regions = shm_regions()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_AS_IN_A_TERMINAL + "from bfexport.cli import main; main()", "deploy", "--check",
         str(tiny_repo), "--server", "--stub-python", str(server_env[1].executable), "--requests", "10000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    server = stubs = None
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if found := re.search(r"tritonserver pid (\d+)", line):
                server = int(found.group(1))
            if found := re.search(r"stub pids ([\d, ]+)", line):
                stubs = [int(p) for p in found.group(1).split(",")]
                break
        assert server and stubs and running(server) and all(running(p) for p in stubs)
        time.sleep(1.0)  # into the requests
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=180)  # a hang guard, not a speed bound
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "interrupted" in err
    assert not running(server) and not any(running(p) for p in stubs)
    assert shm_regions() <= regions


def test_a_server_that_cannot_start_is_one_line_and_leaves_nothing(
        server_env: tuple[ServerBinary, StubPython], tmp_path: Path) -> None:
    regions = shm_regions()
    with pytest.raises(BfexportError, match="tritonserver exited with"):
        TritonServer.start(tmp_path / "missing", *server_env, timeout=30, extra_args=["--strict-readiness=maybe"])
    assert shm_regions() <= regions


def test_serve_answers_until_sigterm_then_leaves_nothing(server_env: tuple[ServerBinary, StubPython],
                                                         tiny_repo: Path) -> None:
    regions = shm_regions()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from bfexport.cli import main; main()", "deploy", "--serve", str(tiny_repo),
         "--stub-python", str(server_env[1].executable)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"on http://(127\.0\.0\.1:\d+) \(tritonserver pid (\d+)", line)
        assert found, line
        server = int(found.group(2))
        text = np.array([[b"a text to classify"]], dtype=np.object_)
        out = TritonClient(found.group(1)).infer("m_text", {"text": text}, ["logits", "head_counts"])
        assert out["logits"].shape[0] == 1 and out["head_counts"].shape == (1, 3)
        stubs = list(child_processes(server))
        assert stubs and all(running(p) for p in stubs)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert not running(server) and not any(running(p) for p in stubs)
    assert shm_regions() <= regions


def test_the_server_gets_distinct_ports_never_the_given_one() -> None:
    # picked one at a time, two of the three ports could come back equal and the server refused to start
    for _ in range(200):
        ports = free_ports(3, avoid=8000)
        assert len(set(ports)) == 3 and 8000 not in ports
