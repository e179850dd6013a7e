"""benchmarks/slo_load.py --quick --json against a real tritonserver prints the one JSON object the
load test promises (slow: about a minute; skipped with the reason when no server can start), and
the ladder it serves fits the shipped checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.exported import load_exported
from bfexport.ladder_result import LadderResult
from converters import AdaptiveExport, export_with_metadata, save_onnx
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


def test_the_committed_ladder_fits_the_shipped_checkpoint_as_it_exports_today(tmp_path: Path) -> None:
    """slo_load.py deploys the shipped checkpoint with benchmarks/results/slo_ladder.json, which is
    tied to the export's fingerprint: a change to the adaptive graph must come with a recalibrated
    ladder (the command is in benchmarks/results/slo_ladder.txt), or the load test refuses to run."""
    model = load_checkpoint(ROOT / "examples/debian-sections/checkpoint")
    path = save_onnx(export_with_metadata(model, AdaptiveExport(), load_tokenizer_json(
        ROOT / "examples/debian-sections/checkpoint")), tmp_path / "model.onnx")
    LadderResult.load(ROOT / "benchmarks/results/slo_ladder.json").check_model(load_exported(path))
