"""check_repository(): read every model directory of a repository as a ModelConfig and check each
by its kind (ONNX Runtime, TensorRT plan, bfexport's tokenizer, ensemble), offline."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bfexport.errors import BfexportError
from bfexport.files import DIRECTORY, REGULAR, read_json, what_is
from converters.triton.check_onnx import check_onnx, check_plan
from converters.triton.check_tokenizer import check_ensemble, check_tokenizer
from converters.triton.controller_dir import check_controller
from converters.triton.layout import CONFIG_FILE, META_FILE, META_FORMAT
from converters.triton.model_dir import ModelCheck, ModelDir
from converters.triton.schema import parse_config, schema


@dataclass
class RepoCheck:
    repo: str
    models: list[ModelCheck]

    @property
    def ok(self) -> bool:
        return not self.errors()

    def errors(self) -> list[str]:
        return [f"{m.name}: {e}" for m in self.models for e in m.errors]

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "ok": self.ok, "models": [asdict(m) for m in self.models]}


def _read_models(repo: Path, names: list[str] | None,
                 checks: dict[str, ModelCheck]) -> tuple[dict[str, ModelDir], dict[str, dict[str, Any]]]:
    """The model directories whose config.pbtxt parses, and the bfexport.json ({} if none) of
    every directory that has a config.pbtxt, parsed or not."""
    models: dict[str, ModelDir] = {}
    metas: dict[str, dict[str, Any]] = {}
    dirs = [repo / n for n in names] if names is not None else sorted(
        p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    for path in dirs:
        check = checks.setdefault(path.name, ModelCheck(path.name))
        special = [f"{p.relative_to(path)} is {what}" for p in sorted(path.rglob("*"))
                   if (what := what_is(p)) not in (REGULAR, DIRECTORY)]
        if special:  # a named pipe would block the check forever, a device never ends: opened by no step
            check.errors.append(f"not a regular file, so not checked: {'; '.join(special[:5])}")
            continue
        config_path = path / CONFIG_FILE
        if not config_path.is_file():
            check.notes.append("no config.pbtxt (Triton may complete one from the model file): not checked")
            continue
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, BfexportError):
            loaded = read_json(path / META_FILE)
            meta = loaded if isinstance(loaded, dict) and loaded.get("format") == META_FORMAT else {}
        metas[path.name] = meta
        try:
            config = parse_config(config_path.read_text(encoding="utf-8", errors="replace"))
        except BfexportError as e:
            check.errors.append(str(e))
            continue
        check.passed.append("config.pbtxt parses as a Triton ModelConfig")
        models[path.name] = ModelDir(path.name, path, config, meta)
    return models, metas


def check_repository(repo: str | Path, *, models: list[str] | None = None) -> RepoCheck:
    """Check a Triton model repository offline (see the package doc); `models` limits it to those
    model directories. Problems are reported, not raised, except a directory that is not a
    Triton repository holding a model bfexport wrote, or no tritonclient (BfexportError)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise BfexportError(f"{repo}: not a directory (expected a Triton model repository)")
    schema()  # the install hint, before any work
    checks: dict[str, ModelCheck] = {}
    found, metas = _read_models(repo, models, checks)
    if not metas:
        raise BfexportError(f"{repo}: not a Triton model repository: no model directory with a config.pbtxt"
                            + (f" (directories: {', '.join(sorted(checks))})" if checks else ""))
    if not any(metas.values()):
        raise BfexportError(f"{repo}: no model written by bfexport deploy (none has a {META_FILE}); "
                            f"found {', '.join(sorted(metas))}")
    sessions: dict[Path, Any] = {}
    tokenizers: dict[Path, tuple[Any, Any]] = {}
    for name, model in found.items():
        check = checks[name]
        check.kind = model.kind
        if model.config.name and model.config.name != name:
            check.errors.append(f"config name {model.config.name!r} differs from the directory name {name!r}")
        try:
            if check.kind in ("onnxruntime_onnx", "onnxruntime"):
                check_onnx(model, check, sessions)
            elif check.kind in ("tensorrt_plan", "tensorrt"):
                check_plan(model, check)
            elif check.kind == "python" and model.meta.get("role") == "controller":
                check_controller(model, check, found)
            elif check.kind == "python":
                check_tokenizer(model, check, tokenizers)
            elif check.kind == "ensemble":
                check_ensemble(model, found, check, sessions, tokenizers)
            else:
                check.notes.append(f"{check.kind} models are not checked beyond the schema")
        except Exception as e:  # noqa: BLE001 - a broken model is a finding, not a crash
            check.errors.append(f"check failed: {type(e).__name__}: {e}")
    return RepoCheck(str(repo), [checks[k] for k in sorted(checks)])
