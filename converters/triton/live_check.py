"""check_live(): a repository written by `bfexport deploy`, served by a real tritonserver, compared
with OnnxClassifier (the `--server` half of `bfexport deploy --check DIR --server`).

The server gets a temporary copy of the repository's bfexport models; when it has no onnxruntime
backend, each onnxruntime_onnx classifier in the copy is served through ort_model.py, a
python-backend model running the same model.onnx in ONNX Runtime (the report says so). The
repository itself is never changed. The server is stopped on success, failure and Ctrl-C.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bfexport import data
from bfexport.errors import BfexportError
from bfexport.files import read_json
from bfexport.runtime import OnnxClassifier
from converters.triton.http_client import InferError, TritonClient
from converters.triton.layout import (
    CONFIG_FILE,
    META_FILE,
    META_FORMAT,
    MODEL_FILES,
    TOKENIZER_JSON,
    TOKENIZER_MODEL_FILE,
    VERSION,
)
from converters.triton.live_cases import (
    SAMPLE_TEXTS,
    Budget,
    Reference,
    Tally,
    Target,
    bad_requests,
    concurrent,
    sequential,
    text_inputs,
)
from converters.triton.schema import parse_config, render_config
from converters.triton.server import (
    ServerBinary,
    StubPython,
    TritonServer,
    check_stub_python,
    find_server,
    running,
    shm_regions,
    terminate_as_interrupt,
)


@dataclass(frozen=True)
class LiveOptions:
    tritonserver: str | Path | None = None  # default: find_server()
    stub_python: str | Path | None = None  # default: this Python (check_stub_python)
    threads: int = 8
    requests: int = 200  # per thread
    timeout: float = 60.0  # seconds to readiness
    texts: Sequence[str] = ()  # default: SAMPLE_TEXTS
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("threads", "requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                raise BfexportError(f"--{name} must be an integer in [1, 10000], got {value!r}")


@dataclass
class LiveCheck:
    repo: str
    server: dict[str, Any] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def ort_model_py() -> bytes:
    return resources.files("converters.triton").joinpath("ort_model.py").read_bytes()


def bfexport_models(repo: Path) -> list[dict[str, Any]]:
    """The bfexport.json of each classifier directory bfexport wrote (role "model")."""
    found = []
    for path in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            meta = read_json(path / META_FILE)
        except (OSError, BfexportError):
            continue
        if isinstance(meta, dict) and meta.get("format") == META_FORMAT and meta.get("role") == "model":
            found.append({**meta, "dir": path.name})
    return found


def served_copy(repo: Path, models: list[dict[str, Any]], work: Path, stand_in: bool) -> Path:
    """The models' directories copied under work/repo; with stand_in, each onnxruntime_onnx
    classifier becomes a python-backend model running its model.onnx (ort_model.py)."""
    copy = work / "repo"
    copy.mkdir(parents=True)
    for meta in models:
        for name in meta["models"].values():
            shutil.copytree(repo / name, copy / name, symlinks=False)
        if stand_in and meta["backend"] == "onnxruntime":
            model_dir = copy / meta["models"]["model"]
            config = parse_config((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            config.ClearField("platform")
            config.backend = "python"
            (model_dir / CONFIG_FILE).write_text(render_config(config, "# bfexport --check --server: ONNX Runtime "
                                                               "in the python backend\n"), encoding="utf-8")
            (model_dir / VERSION / TOKENIZER_MODEL_FILE).write_bytes(ort_model_py())
    return copy


def _target(meta: dict[str, Any]) -> Target:
    return Target(meta["models"].get("ensemble"), meta["models"]["model"], int(meta["max_batch_size"]),
                  int(meta["n_layers"]), int(meta["n_heads"]), meta["budget_inputs"] != "none",
                  meta["budget_inputs"] == "required")


def _reference(repo: Path, meta: dict[str, Any]) -> Reference:
    names = meta["models"]
    tokenizer = None
    if "tokenizer" in names:
        tokenizer = data.tokenizer_from_str(
            (repo / names["tokenizer"] / VERSION / TOKENIZER_JSON).read_text(encoding="utf-8"))
    classifier = OnnxClassifier(repo / names["model"] / VERSION / MODEL_FILES["onnxruntime"], tokenizer=tokenizer)
    defaults = None
    if meta.get("default_thresholds") is not None:
        defaults = (list(meta["default_thresholds"]), list(meta["default_caps"]))
    return Reference(classifier, defaults)


def _record(check: LiveCheck, what: str, tally: Tally) -> None:
    check.cases[what] = {"rows": tally.rows, "mismatches": tally.mismatches, "errors": tally.errors,
                         "max_abs_logit_diff": tally.max_diff}
    if tally.mismatches or tally.errors:
        check.errors.append(f"{what}: {tally.mismatches} of {tally.rows} rows differ from OnnxClassifier, "
                            f"{tally.errors} request errors ({'; '.join(tally.examples)})")
    else:
        check.passed.append(f"{what}: {tally.rows} rows equal OnnxClassifier's (logits within {1e-4:g}, max "
                            f"{tally.max_diff:.1e}; head_counts identical)")


def _bad_requests(check: LiveCheck, client: TritonClient, target: Target) -> None:
    good = text_inputs(target, ["a text"], Budget()) if target.ensemble else None
    for what, model, inputs in bad_requests(target):
        try:
            client.infer(model, inputs)
            check.errors.append(f"bad request accepted: {what}")
            continue
        except InferError as e:
            status, message = e.status, e.message
        if status != 400:
            check.errors.append(f"bad request {what}: HTTP {status}, expected 400 ({message})")
        else:
            check.passed.append(f"bad request {what}: 400 {message.splitlines()[0][:160]}")
        try:
            if good is not None and target.ensemble:
                client.infer(target.ensemble, good, ["logits"])
        except InferError as e:
            check.errors.append(f"after the bad request {what}, a good request failed: {e}")


def find_live_server(options: LiveOptions) -> tuple[ServerBinary, StubPython]:
    """The server binary and the stub's Python environment, checked (BfexportError otherwise):
    cheap, so a caller can fail before any other work."""
    stub = check_stub_python(options.stub_python)
    return find_server(options.tritonserver, stub), stub


def serve(repo: str | Path, options: LiveOptions | None = None, progress: Callable[[str], None] = lambda _: None,
          http_port: int | None = None) -> int:
    """Serve `repo`'s bfexport models on a real tritonserver (127.0.0.1; ONNX Runtime stand-in when
    the server lacks the onnxruntime backend) until Ctrl-C or SIGTERM; returns the server's exit code."""
    options = options or LiveOptions()
    repo = Path(repo)
    models = bfexport_models(repo)
    if not models:
        raise BfexportError(f"{repo}: no model written by bfexport deploy")
    binary, stub = find_live_server(options)
    work = Path(tempfile.mkdtemp(prefix="bfexport-serve-"))
    try:
        copy = served_copy(repo, models, work, not binary.has_onnxruntime)
        with terminate_as_interrupt(), TritonServer.start(copy, binary, stub, timeout=options.timeout,
                                                          http_port=http_port) as server:
            for meta in models:
                server.load(*meta["models"].values())
            names = ", ".join(n for meta in models for n in meta["models"].values())
            progress(f"serving {names} on http://{server.url} (tritonserver pid {server.pid}"
                     + ("" if binary.has_onnxruntime else ", model.onnx through the ONNX Runtime stand-in")
                     + "); Ctrl-C stops it")
            try:
                return server.process.wait()
            except KeyboardInterrupt:
                progress("stopping")
                return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_live(repo: str | Path, options: LiveOptions | None = None,
               progress: Callable[[str], None] = lambda _: None,
               found: tuple[ServerBinary, StubPython] | None = None) -> LiveCheck:
    """Serve `repo` (written by bfexport deploy) on a real tritonserver and compare it with
    OnnxClassifier; see the module doc. Problems found are reported; a missing server, stub
    environment or bfexport model is a BfexportError. `found`: find_live_server's answer."""
    options = options or LiveOptions()
    repo = Path(repo)
    models = [m for m in bfexport_models(repo) if m.get("backend") == "onnxruntime"]
    if not models:
        raise BfexportError(f"{repo}: no ONNX Runtime classifier written by bfexport deploy to serve "
                            "(TensorRT plans need a GPU server)")
    binary, stub = found or find_live_server(options)
    check = LiveCheck(str(repo))
    stand_in = not binary.has_onnxruntime
    if stand_in:
        check.notes.append(f"{binary.path} has no onnxruntime backend: model.onnx is served through a "
                           "python-backend model running ONNX Runtime (ort_model.py), in a temporary copy of the "
                           "repository; the repository's onnxruntime_onnx config is unchanged")
        progress(check.notes[-1])
    texts = list(options.texts) or SAMPLE_TEXTS
    shm_before = shm_regions()
    work = Path(tempfile.mkdtemp(prefix="bfexport-live-"))
    try:
        copy = served_copy(repo, models, work, stand_in)
        progress(f"starting {binary.path} (stub Python {stub.executable}, numpy {stub.numpy})")
        with terminate_as_interrupt(), TritonServer.start(copy, binary, stub, timeout=options.timeout) as server:
            check.server = {"binary": str(binary.path), "pid": server.pid, "http_port": server.http_port,
                            "stub_python": str(stub.executable), "onnxruntime_backend": not stand_in}
            progress(f"tritonserver pid {server.pid} ready on {server.url}")
            for meta in models:
                names = meta["models"]
                server.load(*[names[r] for r in ("model", "tokenizer", "ensemble") if r in names])
                progress(f"loaded {', '.join(names.values())} (stub pids {', '.join(map(str, server.stubs))})")
                _serve_checks(check, server.client(), _target(meta), _reference(repo, meta), texts, options,
                              progress)
            check.server["stubs"] = sorted(server.stubs)
        left = [pid for pid in check.server.get("stubs", []) if running(pid)]
        regions = shm_regions() - shm_before
        if left or regions or server.process.poll() is None:
            check.errors.append(f"after stopping: processes {left}, shared-memory regions {sorted(regions)}")
        else:
            check.passed.append(f"server (pid {server.pid}) stopped; no stub process and no "
                                "/dev/shm/triton_python_backend_shm_region_* left")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return check


def _serve_checks(check: LiveCheck, client: TritonClient, target: Target, reference: Reference, texts: list[str],
                  options: LiveOptions, progress: Callable[[str], None]) -> None:
    rng = random.Random(options.seed)
    for what, tally in sequential(client, target, reference, texts, rng).items():
        _record(check, what, tally)
    progress(f"{len(check.cases)} sequential cases compared; {options.threads} threads x {options.requests} "
             "concurrent requests")
    before = client.statistics(target.model)
    tally, wall = concurrent(client, target, reference, texts, options.threads, options.requests, options.seed)
    after = client.statistics(target.model)
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    what = f"concurrent, {options.threads} threads x {options.requests} requests"
    _record(check, what, tally)
    check.cases[what].update(requests_per_s=round(options.threads * options.requests / wall, 1),
                             mean_batch=round(inferences / executions, 2) if executions else None)
    _bad_requests(check, client, target)
    if not client.ready() or not client.model_ready(target.ensemble or target.model):
        check.errors.append("the server is not healthy after the bad requests")
    else:
        check.passed.append("server and models healthy after the bad requests")
    progress(f"{target.model}: {sum(c['rows'] for c in check.cases.values())} rows compared, "
             f"{len(check.errors)} errors")

