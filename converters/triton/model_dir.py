"""One model directory as the offline check reads it (its ModelConfig, bfexport.json and version
directories), the report on it (ModelCheck), and the checks every kind of model shares."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.triton.schema import ModelConfig


@dataclass
class ModelCheck:
    name: str
    kind: str = "?"
    passed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ModelDir:
    name: str
    path: Path
    config: ModelConfig
    meta: dict[str, Any]  # bfexport.json, {} when bfexport did not write it

    @property
    def mbs(self) -> int:
        return int(self.config.max_batch_size)

    @property
    def kind(self) -> str:
        return str(self.config.platform or self.config.backend or "?")

    def ios(self, key: str) -> dict[str, Any]:
        """The config's inputs ("input") or outputs ("output") by name."""
        return {str(io.name): io for io in getattr(self.config, key)}

    def version_dirs(self) -> list[Path]:
        versions = (p for p in self.path.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))
        return sorted(versions, key=lambda p: int(p.name))


def model_file(model: ModelDir, check: ModelCheck, default: str) -> Path | None:
    versions = model.version_dirs()
    if not versions:
        check.errors.append("no version directory (e.g. 1/)")
        return None
    path = versions[-1] / (model.config.default_model_filename or default)
    if not path.is_file():
        check.errors.append(f"{path.relative_to(model.path)} missing")
        return None
    return path


def session(path: Path, sessions: dict[Path, Any]) -> Any:
    """An ONNX Runtime session on the CPU, one per file for the whole check."""
    if path not in sessions:
        import onnxruntime as ort

        from bfexport.runtime import session_options

        sessions[path] = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    return sessions[path]


def dims_match(model_dims: list[Any], expected: list[int]) -> bool:
    """Triton's comparison: same rank; a fixed model dim must equal the config's."""
    if len(model_dims) != len(expected):
        return False
    return all(not isinstance(m, int) or m < 0 or m == e for m, e in zip(model_dims, expected, strict=True))


def labels_file(model: ModelDir, check: ModelCheck, n_labels: int | None) -> None:
    for io in model.config.output:
        if not io.label_filename:
            continue
        path = model.path / str(io.label_filename)
        if not path.is_file():
            check.errors.append(f"output {io.name}: label file {io.label_filename} missing")
        elif n_labels is not None and len(path.read_text(encoding="utf-8").splitlines()) != n_labels:
            check.errors.append(f"{io.label_filename}: expected {n_labels} labels")


def onnx_defaults(session: Any) -> dict[str, np.ndarray]:
    """Budget defaults: the file's initializers, or its bfexport config metadata when they were
    turned into plain inputs."""
    out: dict[str, np.ndarray] = {}
    meta = session.get_modelmeta().custom_metadata_map
    with contextlib.suppress(KeyError, ValueError, TypeError):
        config = json.loads(meta["bfexport.config"])
        out["budget_thresholds"] = np.asarray([config["budget_thresholds"]], dtype=np.float32)
        out["head_caps"] = np.asarray([config["head_caps"]], dtype=np.int64)
    return out

