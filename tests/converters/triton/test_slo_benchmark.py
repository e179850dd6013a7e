"""benchmarks/slo_load.py --quick --json against a real tritonserver prints the one JSON object the
load test promises (slow: about a minute; skipped with the reason when no server can start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converters.triton.server import ServerBinary, StubPython
from tests.converters.triton.test_live_server import server_env  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_quick_load_test_prints_the_comparison(server_env: tuple[ServerBinary, StubPython]) -> None:  # noqa: F811
    env = dict(os.environ, BFEXPORT_STUB_PYTHON=str(server_env[1].executable), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "slo_load.py"), "--quick", "--json"],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["target_p99_ms"] > 0 and len(result["steps"]) == 3
    for step in result["steps"]:
        assert step["load"] > 0
        for variant in ("fixed_full", "fixed_cheapest", "adaptive"):
            numbers = step[variant]
            assert numbers["errors"] == 0 and numbers["requests"] > 0
            assert numbers["p99_ms"] >= numbers["p50_ms"] > 0 and numbers["throughput"] > 0
            assert 0 <= numbers["accuracy"] <= 1
        assert sum(step["adaptive"]["rung_mix"].values()) == pytest.approx(1.0)
