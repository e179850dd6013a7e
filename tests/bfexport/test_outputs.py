"""What the commands may write over: nothing bfexport did not write, never an input, never a
device or a pipe, and all of it refused before any work; outputs get the umask's modes.

Refusals are checked with the work itself replaced by a function that fails the test, so a
check that comes only after the training, calibration or export shows up as exit 3, not 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bfexport.checkpoint import save_checkpoint
from bfexport.cli import run
from bfexport.errors import BfexportError
from bfexport.files import atomic_dir, atomic_file

HANG_GUARD_S = 120  # reading a named pipe blocks forever; this only ends such a child, it times nothing


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training, calibration, export and deploy's preparation fail the test if they start."""
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the outputs were checked")

    for target in ("bfexport.cli.train.train", "bfexport.cli.calibrate.calibrate",
                   "bfexport.cli.convert.export_with_metadata", "converters.triton.deployment.prepare"):
        monkeypatch.setattr(target, started)


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def refused(args: list[object], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run the CLI; it must exit 2 with one line holding every `expected` piece."""
    capsys.readouterr()
    code = run([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for piece in expected:
        assert piece in err, err
    return err


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def calibrate(onnx_file: Path, data_file: Path, *args: object) -> list[object]:
    return ["calibrate", onnx_file, "--data", data_file, "--target-flops", "0.9", *args]


# ---- item 1: calibrate --report ----------------------------------------------------------------

@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_report_refuses_a_directory_it_did_not_write(onnx_file: Path, data_file: Path, tmp_path: Path, no_work: None,
                                                     force: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.txt").write_text("mine")
    refused(calibrate(onnx_file, data_file, "-o", tmp_path / "c.json", "--report", proj, *force), capsys,
            f"--report {proj}: exists and is not a calibration report written by bfexport", "remove it yourself")
    assert snapshot(proj) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_report_never_holds_the_input_model(onnx_file: Path, data_file: Path, tmp_path: Path, no_work: None,
                                            force: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r"
    report.mkdir()
    model = Path(shutil.copy(onnx_file, report / "m.onnx"))
    before = snapshot(report)
    refused(calibrate(model, data_file, "-o", tmp_path / "c.json", "--report", report, *force), capsys,
            "contains the input MODEL")
    assert snapshot(report) == before


def test_report_replaces_its_own_previous_report_only_with_force(onnx_file: Path, data_file: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report"
    assert run([str(a) for a in calibrate(onnx_file, data_file, "-o", tmp_path / "a.json", "--report", report)]) == 0
    (report / "stale.txt").write_text("from before")
    refused(calibrate(onnx_file, data_file, "-o", tmp_path / "b.json", "--report", report), capsys,
            "already exists (a calibration report written by bfexport); use --force to replace it")
    assert (report / "stale.txt").exists()
    assert run([str(a) for a in calibrate(onnx_file, data_file, "-o", tmp_path / "b.json", "--report", report,
                                          "--force")]) == 0
    assert sorted(p.name for p in report.iterdir()) == ["head_usage.png", "pareto.png", "report.json"]


# ---- item 2: train -o, and files that exist ---------------------------------------------------

def train_args(data_file: Path, out: Path, *extra: object) -> list[str]:
    tiny = ["--epochs", "1", "--explore-frac", "0", "--vocab-size", "100", "--max-length", "8", "--d-model", "8",
            "--n-heads", "2", "--n-layers", "1", "--d-ff", "8"]
    return [str(a) for a in ["train", "--train", data_file, "--validation", data_file, "-o", out, *tiny, *extra]]


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_train_refuses_a_directory_that_is_not_a_checkpoint(data_file: Path, tmp_path: Path, no_work: None,
                                                             force: list[str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused(train_args(data_file, out, *force), capsys, "not a checkpoint written by bfexport")
    assert (out / "notes.txt").read_text() == "mine"


def test_train_replaces_a_checkpoint_only_with_force(data_file: Path, checkpoint: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(checkpoint)
    refused(train_args(data_file, checkpoint), capsys,
            f"-o {checkpoint}: already exists (a checkpoint written by bfexport); use --force to replace it")
    assert snapshot(checkpoint) == before
    assert run(train_args(data_file, checkpoint, "--force")) == 0
    assert json.loads((checkpoint / "config.json").read_text())["d_model"] == 8


def test_existing_files_are_replaced_only_with_force(checkpoint: Path, onnx_file: Path, data_file: Path,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    for args, option in [(["convert", checkpoint, "-o", mine], "-o"),
                         (calibrate(onnx_file, data_file, "-o", mine), "-o"),
                         (calibrate(onnx_file, data_file, "-o", tmp_path / "c.json", "--write-model", mine),
                          "--write-model")]:
        refused(args, capsys, f"{option} {mine}: already exists (a regular file); use --force to replace it")
        assert mine.read_text() == "mine"
    assert run(["convert", str(checkpoint), "-o", str(mine), "--force"]) == 0
    assert mine.read_bytes() == onnx_file.read_bytes()


# ---- item 4: outputs that are inputs (or each other), whatever the flags -----------------------

COLLISIONS = {
    "calibrate -o X --write-model X": (["calibrate", "{onnx}", "--data", "{data}", "--target-flops", "0.9",
                                        "-o", "{tmp}/x.onnx", "--write-model", "{tmp}/x.onnx"],
                                       "-o {tmp}/x.onnx: is the --write-model output"),
    "calibrate -o DATA": (["calibrate", "{onnx}", "--data", "{data}", "--target-flops", "0.9", "-o", "{data}"],
                          "is the input --data"),
    "calibrate --write-model MODEL": (["calibrate", "{onnx}", "--data", "{data}", "--target-flops", "0.9",
                                       "-o", "{tmp}/c.json", "--write-model", "{onnx}"], "is the input MODEL"),
    "calibrate -o inside --report": (["calibrate", "{onnx}", "--data", "{data}", "--target-flops", "0.9",
                                      "-o", "{tmp}/r/c.json", "--report", "{tmp}/r"], "is inside the --report output"),
    "convert -o CKPT/model.safetensors": (["convert", "{ckpt}", "-o", "{ckpt}/model.safetensors"],
                                          "is inside the input CHECKPOINT"),
    "convert --hf-dir CKPT": (["convert", "{ckpt}", "-o", "{tmp}/m2.onnx", "--hf-dir", "{ckpt}"],
                              "is the input CHECKPOINT"),
    "train -o around --train": (["train", "--train", "{data}", "--validation", "{data}", "-o", "{tmp}"],
                                "contains the input --train"),
}


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
@pytest.mark.parametrize("case", COLLISIONS)
def test_an_output_never_replaces_an_input(case: str, force: list[str], checkpoint: Path, onnx_file: Path,
                                           data_file: Path, tmp_path: Path, no_work: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args, message = COLLISIONS[case]
    fill = {"onnx": onnx_file, "data": data_file, "ckpt": checkpoint, "tmp": tmp_path}
    before = snapshot(tmp_path)
    refused([a.format(**fill) for a in args] + force, capsys, message.format(**fill), "choose another path")
    assert snapshot(tmp_path) == before


# ---- item 5: special files at output paths ----------------------------------------------------

@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
@pytest.mark.parametrize("target", ["fifo", "/dev/null"])
@pytest.mark.parametrize("command", ["convert -o", "calibrate -o", "calibrate --write-model"])
def test_special_files_are_never_replaced(command: str, target: str, force: list[str], checkpoint: Path,
                                          onnx_file: Path, data_file: Path, tmp_path: Path, fifo: Path, no_work: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = fifo if target == "fifo" else Path(target)
    args = {"convert -o": ["convert", checkpoint, "-o", path],
            "calibrate -o": calibrate(onnx_file, data_file, "-o", path),
            "calibrate --write-model": calibrate(onnx_file, data_file, "-o", tmp_path / "c.json",
                                                 "--write-model", path)}[command]
    what = "a named pipe" if target == "fifo" else "a character device"
    refused([*args, *force], capsys, f"{path}: is {what}; bfexport writes only regular files")
    assert (stat.S_ISFIFO if target == "fifo" else stat.S_ISCHR)(os.stat(path).st_mode)


def test_report_on_a_pipe_and_atomic_writes_refuse_special_files(onnx_file: Path, data_file: Path, tmp_path: Path,
                                                                  fifo: Path, no_work: None,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    refused(calibrate(onnx_file, data_file, "-o", tmp_path / "c.json", "--report", fifo), capsys,
            "is a named pipe, not a directory")
    with pytest.raises(BfexportError, match="is a named pipe; bfexport writes only regular files"), atomic_file(fifo):
        pass
    with pytest.raises(BfexportError, match="exists and is not a directory"), atomic_dir(fifo):
        pass
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ---- item 20 (part): the current directory as an output directory -----------------------------

@pytest.mark.parametrize("command", ["calibrate --report .", "train -o ."])
def test_the_current_directory_is_refused_before_any_work(command: str, onnx_file: Path, data_file: Path,
                                                          tmp_path: Path, no_work: None,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    args = (calibrate(onnx_file, data_file, "-o", tmp_path / "c.json", "--report", ".")
            if command.startswith("calibrate") else train_args(data_file, Path(".")))
    refused(args, capsys, "is the current directory or one above it")


# ---- item 28 (part): convert creates a missing output directory --------------------------------

def test_convert_creates_missing_output_directories(checkpoint: Path, data_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    refused(["convert", checkpoint, "-o", data_file / "m.onnx"], capsys, f"{data_file} is not a directory")
    out, hf_dir = tmp_path / "a" / "b" / "m.onnx", tmp_path / "c" / "hf"
    assert run(["convert", str(checkpoint), "-o", str(out), "--hf-dir", str(hf_dir)]) == 0
    assert out.is_file() and (hf_dir / "config.json").is_file()


# ---- item 27: the umask, not the temporary files' 0600 / 0700 ----------------------------------

@pytest.fixture()
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_outputs_get_the_umask_modes(checkpoint: Path, model: object, tmp_path: Path, umask_027: None) -> None:
    out = tmp_path / "m.onnx"
    assert run(["convert", str(checkpoint), "-o", str(out), "--hf-dir", str(tmp_path / "hf")]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert modes(tmp_path / "hf") == {("dir", 0o750), ("file", 0o640)}
    saved = save_checkpoint(model, tmp_path / "saved")  # type: ignore[arg-type]
    assert modes(saved) == {("dir", 0o750), ("file", 0o640)}  # safetensors alone writes 0600


# ---- item 18: named pipes and other special files as inputs -----------------------------------

def child(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.run([sys.executable, "-c", "from bfexport.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)


@pytest.mark.parametrize("command", ["calibrate", "inspect", "train"])
def test_a_pipe_as_data_is_refused_not_read(command: str, onnx_file: Path, data_file: Path, fifo: Path,
                                            tmp_path: Path) -> None:
    args = {"calibrate": calibrate(onnx_file, fifo, "-o", tmp_path / "c.json"),
            "inspect": ["inspect", onnx_file, "--data", fifo],
            "train": ["train", "--train", data_file, "--validation", fifo, "-o", tmp_path / "t"]}[command]
    result = child(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {fifo}: is a named pipe, not a regular file\n"


@pytest.mark.parametrize("command", ["convert", "deploy"])
@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_special_files_in_a_checkpoint_are_refused(name: str, command: str, checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (checkpoint / name).unlink()
    os.mkfifo(checkpoint / name)
    args = ["convert", checkpoint, "-o", tmp_path / "m.onnx"] if command == "convert" else \
        ["deploy", checkpoint, "--repo", tmp_path / "repo"]
    refused(args, capsys, f"{checkpoint / name}: is a named pipe, not a regular file")


def test_a_pipe_as_model_or_calibration_is_refused(checkpoint: Path, data_file: Path, fifo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    refused(["inspect", fifo], capsys, f"{fifo}: is a named pipe, not a regular file")
    refused(calibrate(fifo, data_file, "-o", tmp_path / "c.json"), capsys, "is a named pipe, not a regular file")
    refused(["deploy", checkpoint, "--repo", tmp_path / "repo", "--calibration", fifo], capsys,
            f"{fifo}: is a named pipe, not a regular file")


# ---- check_outputs itself ---------------------------------------------------------------------

def test_check_outputs_names_what_is_there_and_the_flag(tmp_path: Path) -> None:
    from bfexport.files import DirKind, Output, check_outputs  # here, so the other tests run on older code too

    kind = DirKind("a thing", "marker.json", "ours")
    ours, empty = tmp_path / "ours", tmp_path / "empty"
    ours.mkdir()
    empty.mkdir()
    (ours / "marker.json").write_text('{"ours": 1}')
    check_outputs([Output(empty, "--out", kind)], {}, force=False)  # an empty directory holds nothing to lose
    with pytest.raises(BfexportError, match=r"--out .*ours: already exists \(a thing written by bfexport\); "
                                            "use --force to replace it"):
        check_outputs([Output(ours, "--out", kind)], {}, force=False)
    check_outputs([Output(ours, "--out", kind)], {}, force=True)
    with pytest.raises(BfexportError, match="parent directory .* does not exist"):
        check_outputs([Output(tmp_path / "no" / "x.json", "-o")], {}, force=True)
    check_outputs([Output(tmp_path / "no" / "x.json", "-o", make_parents=True)], {}, force=True)
    link = tmp_path / "link.json"
    link.symlink_to(ours / "marker.json")  # a second name for an input is still that input
    with pytest.raises(BfexportError, match="is the input DATA"):
        check_outputs([Output(link, "-o")], {"DATA": ours / "marker.json"}, force=True)
