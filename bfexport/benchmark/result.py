"""The result of a run (settings, environment, models, cells) as strict JSON, and the
head-skipping criteria checked on it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from bfexport.benchmark.rows import Cell
from bfexport.flavors import AdaptiveExport


@dataclass
class BenchmarkResult:
    settings: dict[str, Any]
    environment: dict[str, Any]
    models: list[dict[str, Any]]  # name, shape, source, dense variants built, optimizer fusions, notes
    cells: list[Cell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (NaN -> None), with the head-skipping targets checked ("targets")."""
        out = dataclasses.asdict(self)
        full = self.settings.get("mode", "full") == "full"  # a quick run forces no k: no targets
        out["targets"] = [dataclasses.asdict(t) for t in check_targets(self)] if full else []
        strict: dict[str, Any] = _finite(out)
        return strict


def _finite(obj: Any) -> Any:
    """NaN/inf -> None, so the dict is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


@dataclass
class TargetCheck:
    name: str
    threshold: str
    measurements: list[dict[str, Any]]  # cell, value, passed
    passed: bool | None  # None: no cell measured it


def check_targets(result: BenchmarkResult) -> list[TargetCheck]:
    """The head-skipping targets (what real head skipping should reach), on every cell that measures them.

    1. adaptive efficiency >= 0.95 at k = H/2, seq 512, batch 1
    2. adaptive efficiency >= 0.85 at k = H/2 (per-sample mean), batch > 1, padded ideal
    3. adaptive within 3% of static at the same k (every k, batch 1)
    4. adaptive at k = H within 3% of the dense reference (batch 1)
    """
    eff1, eff8, vs_static, vs_dense = [], [], [], []
    for cell in result.cells:
        half = max(1, int(math.floor(cell.n_heads * 0.5 + 0.5)))
        for r in cell.rows:
            if r.kind is not AdaptiveExport:
                continue
            if cell.batch == 1:
                if r.k == half and cell.seq == 512:
                    eff1.append(_measure(cell.label, r.efficiency, r.efficiency >= 0.95))
                if r.overhead_vs_static is not None:
                    vs_static.append(_measure(f"{cell.label} k {r.k:g}", r.overhead_vs_static,
                                              r.overhead_vs_static <= 0.03))
                if r.overhead_vs_dense is not None:
                    vs_dense.append(_measure(f"{cell.label} vs {cell.dense_reference}", r.overhead_vs_dense,
                                             r.overhead_vs_dense <= 0.03))
            elif r.k is not None and abs(r.k - half) < 1e-9:
                eff8.append(_measure(cell.label, r.efficiency, r.efficiency >= 0.85))
    return [
        _target("efficiency at k = H/2, seq 512, batch 1", ">= 0.95", eff1),
        _target("efficiency at k = H/2 (mean), batch 8, padded ideal", ">= 0.85", eff8),
        _target("adaptive overhead vs static, same k, batch 1", "<= +3%", vs_static),
        _target("adaptive at k = H overhead vs dense reference, batch 1", "<= +3%", vs_dense),
    ]


def _measure(cell: str, value: float, passed: bool) -> dict[str, Any]:
    return {"cell": cell, "value": value, "passed": bool(passed)}


def _target(name: str, threshold: str, measurements: list[dict[str, Any]]) -> TargetCheck:
    return TargetCheck(name, threshold, measurements,
                       all(m["passed"] for m in measurements) if measurements else None)
