"""How to deploy (DeployOptions), checked when built, and the model name to deploy under."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bfexport.errors import BfexportError
from converters.triton.layout import BACKENDS, NAME_PATTERN


@dataclass(frozen=True)
class DeployOptions:
    """How to deploy. dynamic_batching None means on when max_batch_size > 0."""

    name: str | None = None
    backend: str = "onnxruntime"
    calibration: str | Path | None = None
    max_batch_size: int = 8
    instances: int = 1
    dynamic_batching: bool | None = None
    force: bool = False
    allow_unmet_target: bool = False  # apply a calibration whose target was not met (see load_calibration)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise BfexportError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.name is not None:
            check_name(self.name)
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) or self.max_batch_size < 0:
            raise BfexportError(f"--max-batch-size must be an integer >= 0, got {self.max_batch_size!r}")
        if isinstance(self.instances, bool) or not isinstance(self.instances, int) or self.instances < 1:
            raise BfexportError(f"--instances must be an integer >= 1, got {self.instances!r}")
        if self.dynamic_batching and self.max_batch_size == 0:
            raise BfexportError("--dynamic-batching needs --max-batch-size >= 1 (Triton batches only models "
                                "that declare a batch dimension)")
        if self.backend == "tensorrt" and self.max_batch_size == 0:
            raise BfexportError("--backend tensorrt needs --max-batch-size >= 1 (it sets the engine's batch profile)")

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0 if self.dynamic_batching is None else self.dynamic_batching


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BfexportError(f"--name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter "
                            "or digit (it becomes a directory and a Triton model name)")
    return name


def default_name(source: Path) -> str:
    stem = source.stem if source.is_file() else source.resolve().name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:80]
    return name if name and NAME_PATTERN.fullmatch(name) else "budgetformer"
