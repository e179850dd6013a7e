"""A real tritonserver on 127.0.0.1, started and stopped by this process: find the binary, check the
Python environment of its python-backend stub, start it on free ports in explicit model-control
mode, wait for readiness, load models, and stop it by PID, leaving no stub process or shared-memory
region behind.

    with TritonServer.start(repo, find_server(), check_stub_python(python)) as server:
        server.load("sections_text")
        outputs = server.client().infer("sections_text", {"text": texts})

The server runs in its own session, so a Ctrl-C in the terminal reaches this process only, which
then stops the server (SIGINT, then SIGKILL after a grace period) and ends the stubs it spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bfexport.errors import BfexportError
from converters.triton.http_client import InferError, TritonClient

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"
STUB = "triton_python_backend_stub"
STUB_PACKAGES = ("numpy", "tokenizers", "onnxruntime")
_STUB_PROBE = ("import json, sys; import numpy, tokenizers, onnxruntime; print(json.dumps({'version': '%d.%d' % "
               "sys.version_info[:2], 'numpy': numpy.__version__, 'prefix': sys.prefix}))")
_PYTRITON_PROBE = "import os, pytriton; print(os.path.join(os.path.dirname(pytriton.__file__), 'tritonserver'))"


@dataclass(frozen=True)
class ServerBinary:
    """A tritonserver binary, its backends directory and (from the nvidia-pytriton wheel) the
    python-backend stubs per Python version."""

    path: Path
    backends: Path
    stubs: Path | None

    @property
    def has_onnxruntime(self) -> bool:
        return (self.backends / "onnxruntime" / "libtriton_onnxruntime.so").is_file()


@dataclass(frozen=True)
class StubPython:
    """The python3 whose packages the python-backend stub uses (it ignores PYTHONPATH and takes the
    first python3 on PATH): its bin directory goes first on the server's PATH."""

    executable: Path
    version: str
    numpy: str


def _binary(path: Path) -> ServerBinary:
    root = path.resolve().parent.parent
    stubs = root / "python_backend_stubs"
    return ServerBinary(path, root / "backends", stubs if stubs.is_dir() else None)


def find_server(explicit: str | Path | None = None, stub: StubPython | None = None) -> ServerBinary:
    """The tritonserver to run: `explicit`, else `tritonserver` on PATH, else the one in the
    nvidia-pytriton wheel (the `serve` extra) of this Python, else of the stub's Python."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise BfexportError(f"--tritonserver {path}: not an executable file")
        return _binary(path)
    on_path = shutil.which("tritonserver")
    if on_path:
        return _binary(Path(on_path))
    for python in [Path(sys.executable)] + ([stub.executable] if stub else []):
        found = subprocess.run([str(python), "-c", _PYTRITON_PROBE], capture_output=True, text=True, timeout=60)
        binary = Path(found.stdout.strip()) / "bin" / "tritonserver"
        if found.returncode == 0 and binary.is_file():
            return _binary(binary)
    raise BfexportError("no tritonserver found: give --tritonserver PATH, put it on PATH, or pip install "
                        "'bfexport[serve]' (the nvidia-pytriton wheel bundles one)")


def check_stub_python(executable: str | Path | None = None) -> StubPython:
    """Check the Python environment the stub will use (default: this Python): numpy < 2 (numpy 2
    crashes this server build's python-backend stub on the first text request), tokenizers and
    onnxruntime importable, and a python3 beside it for the server's PATH."""
    python = Path(executable) if executable is not None else Path(sys.executable)
    if not python.is_file() or not os.access(python, os.X_OK):
        raise BfexportError(f"--stub-python {python}: not an executable file")
    return _probe_stub(python, "--stub-python" if executable is not None else "this Python (no --stub-python)")


def _probe_stub(python: Path, label: str) -> StubPython:
    python3 = python.parent / "python3"
    if not python3.is_file():
        raise BfexportError(f"{label} {python}: no python3 beside it (the stub runs the first python3 on "
                            "PATH; give a virtualenv's bin/python)")
    try:
        probe = subprocess.run([str(python3), "-c", _STUB_PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BfexportError(f"{label} {python3}: could not run it ({e})") from None
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise BfexportError(f"{label} {python3}: needs {', '.join(STUB_PACKAGES)} ({last}); e.g. python3.11 "
                            "-m venv stub && stub/bin/pip install 'numpy<2' tokenizers onnxruntime")
    try:
        info = json.loads(probe.stdout.strip().splitlines()[-1])
        major = int(str(info["numpy"]).split(".")[0])
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        raise BfexportError(f"{label} {python3}: not a Python that answers the environment probe") from None
    if major >= 2:
        raise BfexportError(f"{label} {python3}: has numpy {info['numpy']}; this Triton build's python "
                            "backend needs numpy < 2 (give a virtualenv with 'numpy<2' tokenizers onnxruntime)")
    return StubPython(python3, info["version"], info["numpy"])


def free_ports(n: int, avoid: int | None = None) -> list[int]:
    """n distinct free loopback ports, none equal to `avoid`: every socket stays bound until all
    are picked (closing each before binding the next let the OS hand out one port twice, and the
    server then refused to listen for HTTP and metrics on the same port)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < n:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port != avoid:
                ports.append(port)
        return ports


def _backends_for(binary: ServerBinary, stub: StubPython, work: Path) -> Path:
    """The backends directory to give the server: the binary's own when its python backend has a
    stub, else a copy of the python backend with the stub built for the stub Python's version."""
    python = binary.backends / "python"
    if (python / STUB).is_file():
        return binary.backends
    source = binary.stubs / stub.version / STUB if binary.stubs else None
    if source is None or not source.is_file():
        raise BfexportError(f"{binary.path}: no python-backend stub for Python {stub.version} (have: "
                            + ", ".join(sorted(p.name for p in binary.stubs.iterdir()) if binary.stubs else [])
                            + "); give --stub-python of another version")
    target = work / "backends" / "python"
    shutil.copytree(python, target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(source, target / STUB)
    return target.parent


def child_processes(pid: int) -> dict[int, list[str]]:
    """The live processes whose parent is `pid`, with their command lines."""
    out: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, IndexError, ValueError):
            continue
    return out


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within it, SIGTERM raises KeyboardInterrupt (in the main thread), so that a terminated
    check stops its server as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (one that exited and waits to be reaped)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _alive(pid: int, cmdline: list[str]) -> bool:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0") == cmdline
    except OSError:
        return False


@dataclass
class TritonServer:
    """A running tritonserver (see TritonServer.start); stop() ends it and everything it spawned."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path
    work: Path
    stubs: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def start(cls, repo: str | Path, binary: ServerBinary, stub: StubPython, *, timeout: float = 60.0,
              http_port: int | None = None, extra_args: list[str] | None = None) -> TritonServer:
        """Start tritonserver on `repo` (explicit model-control mode, no model loaded) on free
        loopback ports (HTTP on `http_port` when given) and wait until it is ready (at most
        `timeout` seconds)."""
        work = Path(tempfile.mkdtemp(prefix="bfexport-triton-"))
        try:
            backends = _backends_for(binary, stub, work)
            ports = [http_port, *free_ports(2, avoid=http_port)] if http_port else free_ports(3)
            env = dict(os.environ, PATH=f"{stub.executable.parent}{os.pathsep}{os.environ.get('PATH', '')}")
            parents = binary.path.resolve().parents  # the wheel: site-packages/pytriton/tritonserver/bin/
            libs = parents[3] / "nvidia_pytriton.libs" if len(parents) > 3 else None
            if libs is not None and libs.is_dir():  # a copied backend finds the wheel's libraries by path only
                env["LD_LIBRARY_PATH"] = f"{libs}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}"
            args = [str(binary.path), f"--model-repository={Path(repo).resolve()}",
                    f"--backend-directory={backends}", f"--cache-directory={work / 'caches'}",
                    "--model-control-mode=explicit", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                    "--metrics-address=127.0.0.1", f"--http-port={ports[0]}", f"--grpc-port={ports[1]}",
                    f"--metrics-port={ports[2]}", "--allow-gpu-metrics=false", "--exit-timeout-secs=5",
                    "--log-verbose=0", *(extra_args or [])]
            log = work / "server.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                           env=env, start_new_session=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        server = cls(process, ports[0], ports[1], ports[2], log, work)
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def client(self, timeout: float = 60.0) -> TritonClient:
        return TritonClient(self.url, timeout)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        errors = [line for line in text if re.match(r"^[EF]\d{4}", line)] or text
        return " | ".join(errors[-lines:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2.0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BfexportError(f"tritonserver exited with {self.process.returncode} while starting: "
                                    f"{self.log_tail()}")
            if client.ready():
                return
            time.sleep(0.05)
        raise BfexportError(f"tritonserver not ready after {timeout:g} s: {self.log_tail()}")

    def load(self, *models: str) -> None:
        """Load models through the repository API (explicit mode); a failure names the model and
        the server's reason."""
        client = self.client(timeout=300.0)
        try:
            for model in models:
                client.load(model)
        except InferError as e:
            raise BfexportError(f"tritonserver could not load {model}: {e.message.strip()}") from None
        finally:
            self.stubs.update(child_processes(self.pid))

    def stop(self, grace: float = 15.0) -> None:
        """SIGINT the server, SIGKILL it after `grace` seconds; then SIGKILL any stub it left and
        remove the shared-memory regions those stubs named. Safe to call twice."""
        if self.process.poll() is None:
            self.stubs.update(child_processes(self.pid))
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid, cmdline in self.stubs.items():
            if _alive(pid, cmdline):
                with contextlib.suppress(ProcessLookupError):  # it may end between the look and the kill
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(_alive(p, c) for p, c in self.stubs.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for cmdline in self.stubs.values():
            for arg in cmdline:
                name = arg.lstrip("/")
                if name.startswith(SHM_PREFIX) and "/" not in name:
                    (SHM_DIR / name).unlink(missing_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def shm_regions() -> set[str]:
    """The python-backend shared-memory regions in /dev/shm now (a caller can compare before and after)."""
    return {p.name for p in SHM_DIR.glob(SHM_PREFIX + "*")} if SHM_DIR.is_dir() else set()
