"""calibration.json: what was calibrated, on which model and machine, and applying it.

A calibration is only valid for the weights it was searched on, so it records a fingerprint of
the model (config and weights, not the budget defaults, so a file rewritten with calibrated
defaults keeps its identity) and `check_model` refuses any other model. Writing goes through
bfexport.files / bfexport.exported, so a Ctrl-C never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

import numpy as np
import onnx

from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel, load_exported, save_onnx, set_metadata
from bfexport.files import read_json, write_json
from bfexport.model import SIZES, check_caps, check_thresholds, show
from bfexport.names import BUDGET_INPUTS, BUDGET_THRESHOLDS, HEAD_CAPS, KEY_CALIBRATION, KEY_CONFIG

FORMAT = "bfexport.calibration/1"


def fingerprint(exported: ExportedModel) -> str:
    """sha256 over the config (minus the budget defaults), the flavor and every weight."""
    h = hashlib.sha256()
    config = {k: v for k, v in exported.config.to_dict().items() if k not in BUDGET_INPUTS}
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(exported.flavor.encode())
    for init in sorted(exported.proto.graph.initializer, key=lambda t: t.name):
        if init.name in BUDGET_INPUTS:
            continue
        h.update(init.name.encode())
        h.update(onnx.numpy_helper.to_array(init).tobytes())
    return h.hexdigest()


def plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays become Python numbers and lists."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON serializable")
    return json.loads(json.dumps(obj, default=default))


class JsonRecord:
    """A result kept as one JSON file: save writes it atomically, load checks it (from_json)
    and names the file in any error."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: Any) -> Self:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        try:
            return cls.from_json(read_json(path))
        except BfexportError as e:
            raise BfexportError(f"{path}: {e}") from None


@dataclass
class CalibrationResult(JsonRecord):
    """The calibrated thresholds and caps, what they achieve, and how they were found."""

    thresholds: list[float]
    caps: list[int]
    target: dict[str, Any]
    achieved_flops_ratio: float
    objective: str  # "accuracy" or "agreement"
    accuracy: float | None
    agreement: float  # with the all-heads model's predictions
    target_met: bool
    within_tolerance: bool
    mean_heads_per_layer: list[float]
    baselines: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    machine: dict[str, Any]
    runtime: dict[str, Any]
    search: dict[str, Any]
    latency_ms: dict[str, Any] | None = None
    # per layer at the chosen point: distinct k in use, std of k, share of the most common k, varies or not
    adaptivity_per_layer: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cost_unit: str = ""  # of every point's "cost": "flops_ratio" (FLOP targets) or "ms" (latency targets)
    created: str = ""  # UTC, ISO 8601
    format: str = FORMAT
    report: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # for --report, not saved

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("report")
        if out["latency_ms"] is None:
            out.pop("latency_ms")
        saved: dict[str, Any] = plain(out)
        return saved

    @classmethod
    def from_json(cls, data: Any) -> CalibrationResult:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BfexportError(f"not a bfexport calibration (expected format {FORMAT!r})")
        known = {f.name for f in fields(cls)} - {"report"}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in data]
        if missing:
            raise BfexportError(f"calibration is missing {', '.join(missing)}")
        _check_types(data)
        result = cls(**{k: v for k, v in data.items() if k in known})
        result.thresholds = check_thresholds(result.thresholds, len(result.thresholds))
        return result

    def check_model(self, exported: ExportedModel) -> None:
        """Refuse to apply this calibration to a model other than the one it was made on."""
        found = fingerprint(exported)
        if found != self.model.get("fingerprint"):
            raise BfexportError(f"{exported.path}: this calibration was made for another model "
                                f"(fingerprint {str(self.model.get('fingerprint'))[:12]}, this model {found[:12]}); "
                                "recalibrate it with `bfexport calibrate`")
        cfg, top = exported.config, max(self.caps, default=0)
        if len(self.thresholds) != cfg.n_layers or top > cfg.n_heads:
            raise BfexportError(f"{exported.path}: this calibration has {len(self.thresholds)} thresholds and caps "
                                f"up to {top}, the model has {cfg.n_layers} layers of {cfg.n_heads} heads")


def _check_types(data: dict[str, Any]) -> None:
    """The fields a calibration is applied with, type-checked strictly: a cap of 2.9, true or "8"
    is an error naming the field, never truncated or coerced."""
    thresholds, caps = data["thresholds"], data["caps"]
    if not isinstance(thresholds, list) or not isinstance(caps, list) or not thresholds or len(thresholds) != len(caps):
        raise BfexportError("thresholds and caps must be lists of the same length (one value per layer), "
                            f"got {show(thresholds, 60)} and {show(caps, 60)}")
    for name, check in (("thresholds", lambda: check_thresholds(thresholds, len(thresholds))),
                        ("caps", lambda: check_caps(caps, len(caps), SIZES["n_heads"]))):
        try:
            check()
        except BfexportError as e:
            raise BfexportError(f"{name}: {e}") from None
    for name, kinds, what in (("target_met", bool, "true or false"), ("within_tolerance", bool, "true or false"),
                              ("target", dict, "an object"), ("model", dict, "an object"),
                              ("achieved_flops_ratio", (int, float), "a finite number")):
        value = data[name]
        if (not isinstance(value, kinds) or (kinds is not bool and isinstance(value, bool))
                or (isinstance(value, float) and not math.isfinite(value))):
            raise BfexportError(f"{name}: expected {what}, got {show(value, 60)}")


def with_defaults(exported: ExportedModel, thresholds: list[float], caps: list[int],
                  note: dict[str, Any] | None = None) -> onnx.ModelProto:
    """A copy of the model whose default budget_thresholds / head_caps (and the config in its
    metadata) are the given ones; requests that pass their own still override them."""
    cfg = exported.config
    thresholds = check_thresholds(list(thresholds), cfg.n_layers)
    caps = check_caps(list(caps), cfg.n_layers, cfg.n_heads)
    proto = onnx.ModelProto()
    proto.CopyFrom(exported.proto)
    values: dict[str, np.ndarray] = {BUDGET_THRESHOLDS: np.asarray([thresholds], dtype=np.float32),
                                     HEAD_CAPS: np.asarray([caps], dtype=np.int64)}
    replaced = set()
    for init in proto.graph.initializer:
        if init.name in values:
            init.CopyFrom(onnx.numpy_helper.from_array(values[init.name], init.name))
            replaced.add(init.name)
    if replaced != set(values):
        raise BfexportError(f"{exported.path}: no {' / '.join(sorted(set(values) - replaced))} initializer to "
                            "replace; only adaptive or masked exports take budgets")
    config = cfg.to_dict()
    config["budget_thresholds"] = thresholds
    config["head_caps"] = caps
    meta = {KEY_CONFIG: json.dumps(config, indent=2, sort_keys=True) + "\n"}
    if note is not None:
        meta[KEY_CALIBRATION] = json.dumps(note, sort_keys=True)
    set_metadata(proto, meta)
    return proto


def write_model(result: CalibrationResult, model: str | Path | ExportedModel, out: str | Path) -> Path:
    """Write `model` with `result`'s thresholds and caps as defaults, atomically, after
    checking that `result` was calibrated on this model."""
    exported = model if isinstance(model, ExportedModel) else load_exported(model)
    result.check_model(exported)
    note = {"target": result.target, "achieved_flops_ratio": result.achieved_flops_ratio,
            "fingerprint": result.model.get("fingerprint")}
    return save_onnx(with_defaults(exported, result.thresholds, result.caps, note), out)
