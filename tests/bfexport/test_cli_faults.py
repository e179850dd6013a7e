"""Real faults against real `bfexport` processes: SIGINT and SIGKILL while convert, calibrate and
deploy compute or move their outputs into place, and write errors from the operating system.

Each child process pauses at a chosen call (a patched function that sleeps once), the test waits
for it to get there, then sends the signal: the fault lands at that exact point, not at a time
that depends on the machine's speed. Afterwards no output may be partial, Ctrl-C must leave no
temporary file, and the same command run again must succeed.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfexport.checkpoint import save_checkpoint
from bfexport.data import train_tokenizer
from converters.onnx import load_exported
from converters.triton import check_repository
from tests.factories import LABELS, TEXTS, tiny_model

# Runs the CLI; with BFX_PAUSE=module:function, that function is replaced by a version that, on
# its first call (with a path under BFX_UNDER, when set), writes BFX_MARKER and sleeps until the
# test sends a signal.
RUNNER = """
import functools, importlib, os, signal, sys, time
from pathlib import Path

# Ctrl-C as in a terminal, even when the tests run in the background (which ignores SIGINT,
# and an ignored signal stays ignored in children).
signal.signal(signal.SIGINT, signal.default_int_handler)

def pause_at(spec, marker, under):
    module_name, attribute = spec.split(":")
    owner = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    real = getattr(owner, name)

    def touches(args):
        return under is None or any(str(a).startswith(under) for a in args if isinstance(a, (str, os.PathLike)))

    @functools.wraps(real)
    def paused(*args, **kwargs):
        if touches(args) and not marker.exists():
            marker.write_text("paused")
            time.sleep(600)
        return real(*args, **kwargs)

    setattr(owner, name, paused)

if "BFX_PAUSE" in os.environ:
    pause_at(os.environ["BFX_PAUSE"], Path(os.environ["BFX_MARKER"]), os.environ.get("BFX_UNDER"))
from bfexport.cli import main
sys.argv[0] = "bfexport"
main()
"""

WAIT_S = 180  # how long a child may take to reach its pause point before the test gives up


@dataclass
class Inputs:
    checkpoint: Path
    onnx: Path
    data: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("fault-inputs")
    tokenizer = train_tokenizer(TEXTS, 120)
    checkpoint = save_checkpoint(tiny_model(vocab_size=tokenizer.get_vocab_size()), root / "ckpt",
                                 tokenizer_json=tokenizer.to_str())
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": LABELS[i % len(LABELS)]}) + "\n"
                            for i, t in enumerate(TEXTS)))
    onnx = root / "model.onnx"
    assert bfexport("convert", checkpoint, "-o", onnx).returncode == 0
    return Inputs(checkpoint, onnx, data)


def bfexport(*args: object, env: dict[str, str] | None = None, fsize: int | None = None,
             wait: bool = True) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    """`bfexport ARGS` in a child process (paused at BFX_PAUSE when env sets it)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **(env or {})}

    def limit_file_size() -> None:  # the child's writes past `fsize` bytes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    command = [sys.executable, "-c", RUNNER, *map(str, args)]
    proc = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=limit_file_size if fsize is not None else None)
    if not wait:
        return proc
    stdout, stderr = proc.communicate(timeout=WAIT_S * 2)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def interrupt_at(pause: str, sig: signal.Signals, out: Path, *args: object, under: Path
                 ) -> subprocess.CompletedProcess[str]:
    """Run `bfexport ARGS` until it reaches `pause` (for os functions: a call on a path under
    `under`), send `sig`, return how it ended."""
    marker = out.parent / f".marker-{out.name}-{pause.replace(':', '-')}-{sig.name}"
    env = {"BFX_PAUSE": pause, "BFX_MARKER": str(marker)}
    if pause.startswith("os:"):  # libraries rename files of their own: only count ours
        env["BFX_UNDER"] = str(under)
    proc = bfexport(*args, env=env, wait=False)
    assert isinstance(proc, subprocess.Popen)
    deadline = time.monotonic() + WAIT_S
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    marker_seen = marker.exists()
    if proc.poll() is None:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=WAIT_S)
    assert marker_seen, f"the child never reached {pause}: exit {proc.returncode}\n{stderr}"
    marker.unlink()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and not p.name.startswith(".marker"))


def check_ended_by(result: subprocess.CompletedProcess[str], sig: signal.Signals, directory: Path) -> None:
    """Ctrl-C: exit 130 with one line and no temporary file; SIGKILL: killed (temporary files
    may stay, hidden, since nothing can run after SIGKILL)."""
    if sig == signal.SIGINT:
        assert result.returncode == 130 and result.stderr.strip().splitlines()[-1] == "interrupted"
        assert "Traceback" not in result.stderr
        assert leftovers(directory) == []
    else:
        assert result.returncode == -signal.SIGKILL


SIGNALS = [signal.SIGINT, signal.SIGKILL]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("pause", ["converters:export_with_metadata", "os:replace"], ids=["computing", "renaming"])
def test_convert_interrupted_leaves_no_model_and_reruns(inputs: Inputs, tmp_path: Path, pause: str,
                                                         sig: signal.Signals) -> None:
    out = tmp_path / "model.onnx"
    result = interrupt_at(pause, sig, out, "convert", inputs.checkpoint, "-o", out, under=tmp_path)
    check_ended_by(result, sig, tmp_path)
    assert not out.exists()
    assert bfexport("convert", inputs.checkpoint, "-o", out).returncode == 0
    assert out.read_bytes() == inputs.onnx.read_bytes()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("pause", ["calibration.api:search", "os:replace"], ids=["searching", "renaming"])
def test_calibrate_interrupted_leaves_no_calibration_and_reruns(inputs: Inputs, tmp_path: Path, pause: str,
                                                                 sig: signal.Signals) -> None:
    """Outputs are moved in report first, calibration.json last: the json exists only when
    the whole set is in place."""
    out = tmp_path / "calibration.json"
    args = ["calibrate", inputs.onnx, "--data", inputs.data, "--target-flops", "0.9", "-o", out,
            "--write-model", tmp_path / "calibrated.onnx", "--report", tmp_path / "report"]
    result = interrupt_at(pause, sig, out, *args, under=tmp_path)
    check_ended_by(result, sig, tmp_path)
    assert not out.exists()
    assert bfexport(*args).returncode == 0
    saved = json.loads(out.read_text())
    assert load_exported(tmp_path / "calibrated.onnx").default_caps == saved["caps"]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("pause", ["converters.triton.deployment:prepare", "os:replace"], ids=["preparing", "renaming"])
def test_deploy_interrupted_leaves_no_repository_and_reruns(inputs: Inputs, tmp_path: Path, pause: str,
                                                             sig: signal.Signals) -> None:
    repo = tmp_path / "models"
    result = interrupt_at(pause, sig, repo, "deploy", inputs.onnx, "--repo", repo, "--name", "tiny", under=tmp_path)
    check_ended_by(result, sig, tmp_path)
    assert not repo.exists()
    assert bfexport("deploy", inputs.onnx, "--repo", repo, "--name", "tiny").returncode == 0
    assert check_repository(repo).ok


def test_redeploy_interrupted_while_replacing_keeps_the_previous_models(inputs: Inputs, tmp_path: Path) -> None:
    """Ctrl-C between moving the old model directory out and the new one in: rolled back."""
    repo = tmp_path / "models"
    assert bfexport("deploy", inputs.onnx, "--repo", repo, "--name", "tiny", "--max-batch-size", "4").returncode == 0
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    result = interrupt_at("os:replace", signal.SIGINT, repo, "deploy", inputs.onnx, "--repo", repo, "--name",
                          "tiny", "--force", under=repo / "tiny")
    check_ended_by(result, signal.SIGINT, tmp_path)
    assert {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_replacing_a_directory_interrupted_between_renames_restores_it(tmp_path: Path) -> None:
    """atomic_dir (checkpoints, --report, --hf-dir) over an existing DIR, signalled right after
    the old DIR moved aside: Ctrl-C puts it back at once; after SIGKILL the next write does."""
    from bfexport.files import atomic_dir

    report = tmp_path / "report"
    report.mkdir()
    (report / "old.txt").write_text("previous")
    for sig in SIGNALS:
        script = ("import os, signal, sys\n"
                  "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                  "from bfexport.files import atomic_dir\n"
                  "real = os.replace\n"
                  "def replace(src, dst):\n"
                  "    real(src, dst)\n"
                  "    if str(dst).endswith('.report.old'): os.kill(os.getpid(), signal.%s)\n"
                  "os.replace = replace\n"
                  "with atomic_dir(sys.argv[1]) as tmp:\n"
                  "    (tmp / 'new.txt').write_text('new')\n" % sig.name)
        proc = subprocess.run([sys.executable, "-c", script, str(report)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        assert proc.returncode == -signal.SIGKILL if sig == signal.SIGKILL else "KeyboardInterrupt" in proc.stderr
        if sig == signal.SIGKILL:  # killed with the old directory moved aside: the next write puts it back
            assert not report.exists() and (tmp_path / ".report.old").is_dir()
            with pytest.raises(RuntimeError), atomic_dir(report):
                raise RuntimeError("a failed write after the kill")
        assert (report / "old.txt").read_text() == "previous" and not (report / "new.txt").exists()
        assert [p for p in leftovers(tmp_path) if not p.endswith(".tmp")] == []


@pytest.mark.parametrize("command", ["convert", "calibrate", "deploy"])
def test_write_errors_from_the_os_fail_cleanly(inputs: Inputs, tmp_path: Path, command: str) -> None:
    """The child may write at most 4 KiB per file (RLIMIT_FSIZE): the OS refuses the write as a
    full disk would; the command says so on one line, exits 2, and leaves nothing behind."""
    out = tmp_path / "out"
    args = {"convert": ["convert", inputs.checkpoint, "-o", out],
            "calibrate": ["calibrate", inputs.onnx, "--data", inputs.data, "--target-flops", "0.9",
                          "-o", tmp_path / "cal.json", "--write-model", out],
            "deploy": ["deploy", inputs.onnx, "--repo", out]}[command]
    result = bfexport(*args, fsize=4096)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "could not write" in result.stderr and "File too large" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
