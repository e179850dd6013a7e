"""Where the CLI prints: --json alone on stdout, reports (inspect, bench) on stdout, progress and
info on stderr; -V, -v/-q; install hints printed intact; no internal references in the product."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--epochs", "2", "--batch-size", "8", "--explore-frac", "0.5", "--vocab-size", "150", "--max-length", "16",
         "--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32"]
QUICK_BENCH = ["--repeats", "1", "--warmup", "0", "--min-time", "0"]


# ---- train: the JSON object alone on stdout, one line per epoch on stderr -------------------

def test_train_json_is_alone_on_stdout_and_epochs_go_to_stderr(bfexport, data_file: Path, tmp_path: Path) -> None:
    result = bfexport("train", "--train", data_file, "--validation", data_file, "-o", tmp_path / "ckpt", *TRAIN,
                      "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["checkpoint"] == str(tmp_path / "ckpt")  # the whole of stdout is the object
    epochs = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]  # not a terminal: one line each
    assert "validation accuracy" in epochs[0]


def test_train_quiet_prints_only_the_json(bfexport, data_file: Path, tmp_path: Path) -> None:
    result = bfexport("-q", "train", "--train", data_file, "--validation", data_file, "-o", tmp_path / "ckpt",
                      *TRAIN, "--json")
    assert result.returncode == 0 and result.stderr == ""
    assert json.loads(result.stdout)["checkpoint"] == str(tmp_path / "ckpt")


# ---- reports on stdout -------------------------------------------------------------------------

def test_inspect_report_is_on_stdout(bfexport, checkpoint: Path) -> None:
    result = bfexport("inspect", checkpoint)
    assert result.returncode == 0 and "3 layers x 4 heads" in result.stdout and "layers x" not in result.stderr
    as_json = bfexport("inspect", checkpoint, "--json")
    assert json.loads(as_json.stdout)["n_layers"] == 3


def test_bench_report_is_on_stdout(bfexport, checkpoint: Path) -> None:
    result = bfexport("bench", checkpoint, *QUICK_BENCH)
    assert result.returncode == 0, result.stderr
    assert "dense*" in result.stdout and "p99 ms" in result.stdout and "items/s" in result.stdout
    assert "dense*" not in result.stderr
    as_json = bfexport("bench", checkpoint, *QUICK_BENCH, "--json")
    assert json.loads(as_json.stdout)["settings"]["mode"] == "quick"


# ---- -V, -v, -q --------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(bfexport, flag: str) -> None:
    result = bfexport(flag)
    assert result.returncode == 0 and re.match(r"bfexport, version \d", result.stdout)


@pytest.mark.parametrize("where", ["before the command", "after the command"])
def test_quiet_silences_info_but_not_errors_or_json(bfexport, checkpoint: Path, tmp_path: Path, where: str) -> None:
    def convert(*args: object):
        return bfexport("-q", "convert", *args) if where == "before the command" else bfexport("convert", *args, "-q")

    loud = bfexport("convert", checkpoint, "-o", tmp_path / "a.onnx")
    assert loud.returncode == 0 and "wrote" in loud.stderr
    quiet = convert(checkpoint, "-o", tmp_path / "b.onnx")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    as_json = convert(checkpoint, "-o", tmp_path / "c.onnx", "--json")
    assert as_json.stderr == "" and json.loads(as_json.stdout)["flavor"] == "adaptive"
    failed = convert(tmp_path / "no-such-checkpoint", "-o", tmp_path / "d.onnx")
    assert failed.returncode == 2 and failed.stderr.strip()
    assert bfexport("inspect", checkpoint).stderr == ""  # the next run is not quiet by inheritance...
    assert "wrote" in bfexport("convert", checkpoint, "-o", tmp_path / "e.onnx").stderr


def test_verbose_adds_detail(bfexport, checkpoint: Path) -> None:
    plain = bfexport("bench", checkpoint, *QUICK_BENCH, "--json")
    verbose = bfexport("-v", "bench", checkpoint, *QUICK_BENCH, "--json")
    assert plain.returncode == verbose.returncode == 0
    assert "settings" not in plain.stderr and "settings {" in verbose.stderr and "Python" in verbose.stderr
    json.loads(verbose.stdout)
    both = bfexport("-v", "-q", "inspect", checkpoint)
    assert both.returncode == 2 and "exclude each other" in both.stderr


# ---- install hints intact ------------------------------------------------------------------------

def test_install_hint_keeps_its_brackets(bfexport, checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    assert bfexport("deploy", checkpoint, "--repo", tmp_path / "models", "--name", "m").returncode == 0
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # `import tritonclient.grpc` now fails
    result = bfexport("deploy", "--check", tmp_path / "models")
    assert result.returncode == 2, result.stderr
    assert "pip install 'bfexport[deploy]'" in result.stderr


# ---- no internal references in the product ------------------------------------------------------

INTERNAL = re.compile(r"\bissue \d|\(issue\b|the issue's|\bBRIEF\b|design brief|brief section|probe notes", re.I)


def test_no_internal_references_in_product_code_or_output() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for package in ("bfexport", "converters", "calibration")
             for path in sorted((ROOT / package).rglob("*")) if path.suffix in (".py", ".md")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if INTERNAL.search(line)]
    assert found == []
