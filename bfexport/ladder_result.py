"""ladder.json: a ladder of operating points of one model, from the full budget down, each with
its thresholds, caps, accuracy and the latency measured for it (`bfexport calibrate --ladder-*`).

Ground floor because both calibration (which writes it) and the Triton deploy (whose budget
controller serves it) read it. Loading is strict, as for calibration.json: every rung's
thresholds and caps are checked, latencies must be positive finite numbers, and the rungs must
run from the most expensive (rung 0, the top) to the cheapest, since the controller steps down
by index. Like a calibration, a ladder is valid only for the weights it was made on
(`check_model`, by fingerprint).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from bfexport.calibration_result import JsonRecord, fingerprint, plain
from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel
from bfexport.model import SIZES, check_caps, check_thresholds, show

FORMAT = "bfexport.ladder/1"
UNITS = ("flops_ratio", "latency_fraction")


@dataclass
class Rung:
    """One operating point. `target` is in the ladder's unit; `full` marks the all-heads rung."""

    target: float
    thresholds: list[float]
    caps: list[int]
    latency_ms: dict[str, float]  # measured: p50, p90, p95, p99 per call on the ladder's runtime
    accuracy: float | None
    agreement: float
    flops_ratio: float
    mean_heads_per_layer: list[float]
    target_met: bool
    full: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class LadderResult(JsonRecord):
    """The rungs (top first) and what they were measured on."""

    unit: str
    rungs: list[Rung]
    model: dict[str, Any]
    data: dict[str, Any]
    runtime: dict[str, Any]
    measurement: dict[str, Any]
    machine: dict[str, Any]
    search: dict[str, Any]
    created: str = ""
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        saved: dict[str, Any] = plain(asdict(self))
        return saved

    @classmethod
    def from_json(cls, data: Any) -> LadderResult:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BfexportError(f"not a bfexport ladder (expected format {FORMAT!r})")
        for key in ("unit", "rungs", "model", "data", "runtime", "measurement", "machine", "search"):
            if key not in data:
                raise BfexportError(f"ladder is missing {key}")
        if data["unit"] not in UNITS:
            raise BfexportError(f"unit: expected one of {', '.join(UNITS)}, got {show(data['unit'], 60)}")
        raw = data["rungs"]
        if not isinstance(raw, list) or not raw or not all(isinstance(r, dict) for r in raw):
            raise BfexportError(f"rungs: expected a non-empty list of objects, got {show(raw, 60)}")
        for key in ("model", "data", "runtime", "measurement", "machine", "search"):
            if not isinstance(data[key], dict):
                raise BfexportError(f"{key}: expected an object, got {show(data[key], 60)}")
        rungs = [_rung(i, r) for i, r in enumerate(raw)]
        if any(len(r.thresholds) != len(rungs[0].thresholds) for r in rungs):
            raise BfexportError("rungs: every rung needs the same number of thresholds (one per layer)")
        costs = [r.target for r in rungs]
        if costs != sorted(costs, reverse=True):
            raise BfexportError(f"rungs must run from the highest target to the lowest, got targets {costs}")
        return cls(unit=data["unit"], rungs=rungs, model=data["model"], data=data["data"], runtime=data["runtime"],
                   measurement=data["measurement"], machine=data["machine"], search=data["search"],
                   created=str(data.get("created", "")))

    def check_model(self, exported: ExportedModel) -> None:
        """Refuse to serve this ladder with a model other than the one it was made on."""
        found = fingerprint(exported)
        if found != self.model.get("fingerprint"):
            raise BfexportError(f"{exported.path}: this ladder was made for another model (fingerprint "
                                f"{str(self.model.get('fingerprint'))[:12]}, this model {found[:12]}); "
                                "recalibrate it with `bfexport calibrate --ladder-*`")
        cfg = exported.config
        for i, r in enumerate(self.rungs):
            if len(r.thresholds) != cfg.n_layers or max(r.caps) > cfg.n_heads:
                raise BfexportError(f"{exported.path}: ladder rung {i} has {len(r.thresholds)} thresholds and caps "
                                    f"up to {max(r.caps)}, the model has {cfg.n_layers} layers of {cfg.n_heads} heads")


def _number(value: Any, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (positive and value <= 0):
        raise BfexportError(f"{where}: expected a {'positive ' if positive else ''}finite number, "
                            f"got {show(value, 60)}")
    return float(value)


def _rung(i: int, r: dict[str, Any]) -> Rung:
    where = f"rungs[{i}]"
    for key in ("target", "thresholds", "caps", "latency_ms", "agreement", "flops_ratio", "target_met"):
        if key not in r:
            raise BfexportError(f"{where} is missing {key}")
    thresholds, caps = r["thresholds"], r["caps"]
    if not isinstance(thresholds, list) or not thresholds:
        raise BfexportError(f"{where}.thresholds: expected a list of one value per layer, got {show(thresholds, 60)}")
    try:
        thresholds = check_thresholds(thresholds, len(thresholds))
        caps = check_caps(caps, len(thresholds), SIZES["n_heads"])
    except BfexportError as e:
        raise BfexportError(f"{where}: {e}") from None
    latency = r["latency_ms"]
    if not isinstance(latency, dict) or not {"p50", "p99"} <= set(latency):
        raise BfexportError(f"{where}.latency_ms: expected an object with p50 and p99, got {show(latency, 60)}")
    latency = {str(k): _number(v, f"{where}.latency_ms.{k}", positive=True) for k, v in latency.items()}
    if not isinstance(r["target_met"], bool) or not isinstance(r.get("full", False), bool):
        raise BfexportError(f"{where}: target_met and full must be true or false")
    accuracy = r.get("accuracy")
    return Rung(target=_number(r["target"], f"{where}.target", positive=True), thresholds=thresholds, caps=caps,
                latency_ms=latency,
                accuracy=None if accuracy is None else _number(accuracy, f"{where}.accuracy"),
                agreement=_number(r["agreement"], f"{where}.agreement"),
                flops_ratio=_number(r["flops_ratio"], f"{where}.flops_ratio", positive=True),
                mean_heads_per_layer=[_number(v, f"{where}.mean_heads_per_layer")
                                      for v in r.get("mean_heads_per_layer", [])],
                target_met=r["target_met"], full=bool(r.get("full", False)),
                notes=[str(n) for n in r.get("notes", [])])
