"""Writing exported models atomically, and reading back the bfexport metadata they carry.

Each export stores its checkpoint config, flavor and (static) head sets, and optionally the
tokenizer, in the ONNX file's metadata_props, so one .onnx file is enough to validate,
inspect, calibrate and serve it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from bfexport.errors import BfexportError
from bfexport.files import atomic_file
from bfexport.model import BudgetFormerConfig

KEY_CONFIG, KEY_FLAVOR, KEY_HEADS, KEY_TOKENIZER = ("bfexport.config", "bfexport.flavor",
                                                     "bfexport.static_heads", "bfexport.tokenizer")


def set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> Path:
    """Write `proto` to `path` atomically: the file appears complete or not at all."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(proto.SerializeToString(deterministic=True))
    return path


@dataclass
class ExportedModel:
    """An exported file and what bfexport recorded about it."""

    path: Path
    proto: onnx.ModelProto
    config: BudgetFormerConfig
    flavor: str
    static_heads: list[list[int]] | None
    tokenizer_json: str | None

    @property
    def default_thresholds(self) -> list[float]:
        """The thresholds the file runs with when a request carries none."""
        return [float(v) for v in self._initializer("budget_thresholds", self.config.budget_thresholds)]

    @property
    def default_caps(self) -> list[int]:
        return [int(v) for v in self._initializer("head_caps", self.config.head_caps)]

    def _initializer(self, name: str, fallback: Sequence[float]) -> list[float]:
        for init in self.proto.graph.initializer:
            if init.name == name:
                values: list[float] = onnx.numpy_helper.to_array(init).reshape(-1).tolist()
                return values
        return list(fallback)


def load_exported(path: str | Path) -> ExportedModel:
    """Load an ONNX file written by bfexport, refusing files that are not ours or are corrupt."""
    path = Path(path)
    if not path.is_file():
        raise BfexportError(f"{path}: file not found")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and friends
        raise BfexportError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if KEY_CONFIG not in meta or KEY_FLAVOR not in meta:
        raise BfexportError(f"{path}: not a bfexport model (no {KEY_CONFIG} metadata); export it with `bfexport convert`")
    try:
        config = BudgetFormerConfig.from_dict(json.loads(meta[KEY_CONFIG]))
        heads = json.loads(meta[KEY_HEADS]) if KEY_HEADS in meta else None
    except (json.JSONDecodeError, TypeError) as e:
        raise BfexportError(f"{path}: corrupt bfexport metadata ({e})") from None
    return ExportedModel(path, proto, config, meta[KEY_FLAVOR], heads, meta.get(KEY_TOKENIZER))
