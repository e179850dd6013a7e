"""`deploy --check DIR` reads DIR, never runs code from it, and refuses what is not a bfexport Triton repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bfexport.cli import run
from bfexport.errors import BfexportError
from converters.triton import check_repository
from converters.triton.build import tokenizer_model_py
from converters.triton.check_tokenizer import model_py_is_ours
from converters.triton.layout import META_FILE
from converters.triton.offline_backend import load_tokenizer_model, run_tokenizer_model, text_request
from converters.triton.schema import parse_config


@pytest.fixture()
def repo(tiny_repo: Path) -> Path:
    return tiny_repo


@pytest.fixture()
def copy(repo: Path, tmp_path: Path) -> Path:
    shutil.copytree(repo, tmp_path / "models")
    return tmp_path / "models"


def check_cli(repo: Path, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(["deploy", "--check", str(repo)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- model.py is compared, never run --------------------------------------------------------

def test_the_written_model_py_is_bfexports_byte_for_byte(repo: Path) -> None:
    assert (repo / "m_tokenizer" / "1" / "model.py").read_bytes() == tokenizer_model_py()
    assert model_py_is_ours(repo / "m_tokenizer" / "1")
    assert check_repository(repo).ok


DIFFERS = ("m_tokenizer: 1/model.py differs from the one bfexport deploy writes: not run (modified, or written "
           "by an earlier bfexport; redeploy with --force to restore it)")


@pytest.mark.parametrize("change", ["code appended", "one byte changed", "truncated", "a fifo"])
def test_a_modified_model_py_fails_the_check_without_running(copy: Path, tmp_path: Path, capsys,
                                                              change: str) -> None:
    import os

    model_py = copy / "m_tokenizer" / "1" / "model.py"
    marker = tmp_path / "model-py-ran"
    ours = tokenizer_model_py().decode("utf-8")
    expected = DIFFERS
    if change == "code appended":
        model_py.write_text(ours + f"\nopen({str(marker)!r}, 'w').close()\n")
    elif change == "one byte changed":
        model_py.write_text(ours[:100] + ("X" if ours[100] != "X" else "Y") + ours[101:])
    elif change == "truncated":
        model_py.write_text(ours[:-10])
    else:  # reading a fifo would block forever
        model_py.unlink()
        os.mkfifo(model_py)
        expected = "m_tokenizer: not a regular file, so not checked: 1/model.py is a named pipe"
    report = check_repository(copy)
    assert not report.ok and not marker.exists()
    assert [e for e in report.errors() if e.startswith("m_tokenizer:")] == [expected]
    assert not any("ran end to end" in line for m in report.models for line in m.passed)
    code, _, _ = check_cli(copy, capsys)
    assert code == 1 and not marker.exists()


def test_the_stand_in_runs_bfexports_copy_not_the_file(copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "model-py-ran"
    (copy / "m_tokenizer" / "1" / "model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = parse_config((copy / "m_tokenizer" / "config.pbtxt").read_text())
    instance = load_tokenizer_model(copy / "m_tokenizer", config)
    assert not marker.exists()
    response = run_tokenizer_model(instance, [{"text": text_request(["a library"], 8)}])[0]
    assert not response.has_error()


# ---- not a (bfexport) Triton repository ------------------------------------------------------

def not_a_repository(kind: str, repo: Path, root: Path) -> Path:
    if kind == "empty directory":
        root.mkdir()
    elif kind == "directories without config.pbtxt":
        (root / "src" / "1").mkdir(parents=True)
        (root / "docs").mkdir()
    elif kind == "a checkpoint directory":
        shutil.copytree(repo.parent / "ckpt", root)
    else:  # a Triton repository bfexport did not write
        shutil.copytree(repo / "m", root / "other")
        (root / "other" / META_FILE).unlink()
    return root


@pytest.mark.parametrize("kind", ["empty directory", "directories without config.pbtxt", "a checkpoint directory",
                                  "models not written by bfexport"])
def test_a_directory_that_is_not_a_bfexport_repository_fails_on_one_line(repo: Path, tmp_path: Path, capsys,
                                                                        kind: str) -> None:
    path = not_a_repository(kind, repo, tmp_path / "dir")
    with pytest.raises(BfexportError, match="not a Triton model repository|no model written by bfexport"):
        check_repository(path)
    code, out, err = check_cli(path, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
