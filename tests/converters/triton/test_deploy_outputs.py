"""What `deploy` may replace in a repository: only model directories bfexport wrote for the same
role, with --force; never its own source; a README.md that is not a file stops it before any
work; a redeploy keeps the umask's modes; `--check` opens no named pipe."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bfexport.cli import run
from bfexport.errors import BfexportError
from converters.triton import DeployOptions, deploy

HANG_GUARD_S = 120  # reading a named pipe blocks forever; this only ends such a child, it times nothing


@pytest.fixture()
def no_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the deploy started before its outputs were checked")

    monkeypatch.setattr("converters.triton.deployment.prepare", started)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_deploy_never_replaces_its_source(checkpoint: Path, tmp_path: Path, no_prepare: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A model named as its checkpoint directory, in --repo PARENT, would sit on the checkpoint."""
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        capsys.readouterr()
        assert run(["deploy", str(checkpoint), "--repo", str(tmp_path), "--name", checkpoint.name, *force]) == 2
        err = capsys.readouterr().err
        assert f"{checkpoint}: is the input SOURCE {checkpoint}" in err and "use --force" not in err
    assert snapshot(tmp_path) == before


def test_deploy_never_replaces_the_served_file_it_deploys(checkpoint: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    deploy(checkpoint, repo, DeployOptions(name="clf"))
    served = repo / "clf" / "1" / "model.onnx"
    with pytest.raises(BfexportError, match="clf: contains the input SOURCE"):
        deploy(served, repo, DeployOptions(name="clf", force=True))
    assert served.is_file()


@pytest.mark.parametrize("suffix, role", [("", "model"), ("_tokenizer", "tokenizer"), ("_text", "ensemble")])
def test_force_never_replaces_a_directory_bfexport_did_not_write(suffix: str, role: str, checkpoint: Path,
                                                                 tmp_path: Path, no_prepare: None) -> None:
    repo = tmp_path / "models"
    foreign = repo / f"clf{suffix}"
    (foreign / "1").mkdir(parents=True)
    (foreign / "config.pbtxt").write_text('name: "mine"\n')
    before = snapshot(repo)
    with pytest.raises(BfexportError, match=f"clf{suffix}: exists and is not a Triton {role} directory written by "
                                            "bfexport; remove it yourself or choose another path"):
        deploy(checkpoint, repo, DeployOptions(name="clf", force=True))
    assert snapshot(repo) == before


def test_force_replaces_only_the_same_role(checkpoint: Path, tmp_path: Path) -> None:
    """a_tokenizer is a's tokenizer: deploying a model named a_tokenizer would break a."""
    repo = tmp_path / "models"
    deploy(checkpoint, repo, DeployOptions(name="a"))
    before = snapshot(repo)
    with pytest.raises(BfexportError, match="a_tokenizer: exists and is not a Triton model directory"):
        deploy(checkpoint, repo, DeployOptions(name="a_tokenizer", force=True))
    assert snapshot(repo) == before


@pytest.mark.parametrize("what", ["directory", "named pipe"])
def test_a_readme_that_is_not_a_file_stops_deploy_before_any_work(what: str, checkpoint: Path, tmp_path: Path,
                                                                  no_prepare: None) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    if what == "directory":
        (repo / "README.md").mkdir()
    else:
        os.mkfifo(repo / "README.md")
    with pytest.raises(BfexportError, match=f"README.md: is a {what}, not a regular file"):
        deploy(checkpoint, repo, DeployOptions(name="clf"))
    assert [p.name for p in repo.iterdir()] == ["README.md"]


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_redeploy_keeps_the_umask_modes(checkpoint: Path, tmp_path: Path, umask_022: None) -> None:
    repo = tmp_path / "models"
    deploy(checkpoint, repo, DeployOptions(name="clf"))
    deploy(checkpoint, repo, DeployOptions(name="clf", force=True))
    modes = {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [repo, *repo.rglob("*")]}
    assert modes == {("dir", 0o755), ("file", 0o644)}


def test_check_opens_no_named_pipe(checkpoint: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    deploy(checkpoint, repo, DeployOptions(name="clf"))
    for name in ("clf/bfexport.json", "clf_tokenizer/1/model.py"):
        (repo / name).unlink()
        os.mkfifo(repo / name)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    result = subprocess.run([sys.executable, "-c", "from bfexport.cli import main; main()", "deploy", "--check",
                             str(repo), "--json"], capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    assert result.returncode == 1, result.stderr
    errors = {m["name"]: m["errors"] for m in json.loads(result.stdout)["models"]}
    assert errors["clf"] == ["not a regular file, so not checked: bfexport.json is a named pipe"]
    assert errors["clf_tokenizer"] == ["not a regular file, so not checked: 1/model.py is a named pipe"]
