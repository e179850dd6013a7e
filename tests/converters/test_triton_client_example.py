"""examples/triton_client.py: --help without tritonclient, one line (no traceback) when its HTTP client
is missing or the server is unreachable, and the deploy extra installs what it imports."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "triton_client.py"
FAKE_TRITONCLIENT = {  # what `import tritonclient.http` raises in each case
    "package without the [http] extra": ("", "raise RuntimeError('The installation does not include http support')"),
    "no tritonclient at all": ("raise ImportError('No module named tritonclient')", ""),
}


def run_example(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{path}:{ROOT}" if path else str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_help_needs_no_tritonclient(tmp_path: Path) -> None:
    fake = tmp_path / "tritonclient"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named tritonclient')\n")
    result = run_example("--help", path=tmp_path)
    assert result.returncode == 0 and "--thresholds" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("case", sorted(FAKE_TRITONCLIENT))
def test_a_missing_http_client_is_one_line(tmp_path: Path, case: str) -> None:
    package, http = FAKE_TRITONCLIENT[case]
    (tmp_path / "tritonclient" / "http").mkdir(parents=True)
    (tmp_path / "tritonclient" / "__init__.py").write_text(package + "\n")
    (tmp_path / "tritonclient" / "http" / "__init__.py").write_text(http + "\n")
    result = run_example("--model", "m_text", "a space game", path=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "pip install 'tritonclient[http]'" in result.stderr


def test_an_unreachable_server_is_one_line() -> None:
    if importlib.util.find_spec("tritonclient") is None or importlib.util.find_spec("geventhttpclient") is None:
        pytest.skip("tritonclient's HTTP client is not installed here")  # checked without importing gevent here
    result = run_example("--url", "127.0.0.1:9", "--model", "m_text", "a space game")
    assert result.returncode == 1 and result.stderr.startswith("error: Triton at 127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_deploy_extra_installs_the_grpc_and_http_clients() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["deploy"]
    client = next(r for r in extras if r.startswith("tritonclient["))
    match = re.match(r"tritonclient\[([^\]]*)\]", client)
    assert match is not None
    assert {"grpc", "http"} <= {e.strip() for e in match.group(1).split(",")}
