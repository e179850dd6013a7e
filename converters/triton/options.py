"""How to deploy (DeployOptions), checked when built, and the model name to deploy under."""

from __future__ import annotations

import math
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
    pad_buckets: tuple[int, ...] | None = None  # tokenizer padding lengths; None: by backend (pad_buckets())
    ladder: str | Path | None = None  # ladder.json: also write the budget controller NAME_slo (with slo_p99_ms)
    slo_p99_ms: float | None = None

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
        if self.pad_buckets is not None and (
                not isinstance(self.pad_buckets, tuple)
                or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in self.pad_buckets)):
            raise BfexportError(f"--pad-buckets must be positive integers, got {self.pad_buckets!r}")
        if self.backend == "tensorrt" and self.max_batch_size == 0:
            raise BfexportError("--backend tensorrt needs --max-batch-size >= 1 (it sets the engine's batch profile)")
        check_slo(self)

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0 if self.dynamic_batching is None else self.dynamic_batching


POWERS_OF_TWO = tuple(2 ** i for i in range(4, 21))  # 16, 32, 64, ...: --pad-buckets pow2


def pad_buckets(options: DeployOptions, max_length: int) -> list[int]:
    """The tokenizer's padding lengths: the given ones below max_length, then max_length; [] means
    each request's own longest text. By default [] on ONNX Runtime (CPU instances), where buckets
    measured slower (benchmarks/triton_batching.py: the padding cost more than the batching saved),
    and powers of two on TensorRT (GPU instances, where batching is what the engine is built for;
    unmeasured)."""
    given = options.pad_buckets
    if given is None:
        given = POWERS_OF_TWO if options.backend == "tensorrt" else ()
    if not given:
        return []
    return sorted({b for b in given if b < max_length}) + [max_length]


def padded_width(longest: int, buckets: list[int]) -> int:
    """The width the tokenizer pads a request to: the smallest bucket holding its longest row."""
    return next((bucket for bucket in buckets if bucket >= longest), longest)


def check_slo(options: DeployOptions) -> None:
    """--ladder and --slo-p99-ms come together, and the controller reads the queue from the batches
    Triton hands it, so it needs batching."""
    if (options.ladder is None) != (options.slo_p99_ms is None):
        raise BfexportError("--ladder FILE and --slo-p99-ms MS go together (the controller holds that p99 by moving "
                            "along the ladder)")
    if options.slo_p99_ms is None:
        return
    value = options.slo_p99_ms
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BfexportError(f"--slo-p99-ms must be a positive number of milliseconds, got {value!r}")
    if options.max_batch_size == 0 or options.dynamic_batching is False:
        raise BfexportError("--ladder needs --max-batch-size >= 1 and dynamic batching: the controller reads the "
                            "queue from the batches Triton hands it")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BfexportError(f"--name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter "
                            "or digit (it becomes a directory and a Triton model name)")
    return name


GENERIC_NAMES = {"checkpoint", "checkpoints", "ckpt", "model", "models", "best", "last", "final", "output",
                 "outputs", "out", "export", "exported", "onnx", "tmp"}


def default_name(source: Path) -> str:
    """The source's name (a checkpoint directory's, an .onnx file's stem), or its parent directory's
    when that name says nothing (checkpoint, model, out, ...): examples/debian-sections/checkpoint
    deploys as debian-sections; "budgetformer" when neither says anything."""
    path = source.resolve()
    for part in (path.stem if source.is_file() else path.name, path.parent.name):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("._-")[:80]
        if name and name.lower() not in GENERIC_NAMES and NAME_PATTERN.fullmatch(name):
            return name
    return "budgetformer"
