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
    """The adaptive export's targets (never slower; what head skipping should reach), on every cell
    that measures them. H/2 is k at batch 1 and the per-sample mean k at batch > 1.

    1. batch 1, k = H/2: adaptive at least as fast as the dense reference, at every seq
    2. batch 1, k = H/2: adaptive within 3% of static at seq >= 32, within 10% below
    3. batch > 1, per-sample k: efficiency against the per-sample ideal >= 0.90 at seq >= 128
    4. batch 1, k = H/2: efficiency >= 0.95 at seq >= 128
    5. batch 1: adaptive faster than the Hugging Face prune_heads export at the same k wherever
       static is
    6. batch 1, k = H: adaptive within 3% of the dense reference
    """
    never_slower: list[dict[str, Any]] = []
    static_long: list[dict[str, Any]] = []
    static_short: list[dict[str, Any]] = []
    per_sample: list[dict[str, Any]] = []
    eff: list[dict[str, Any]] = []
    vs_hf: list[dict[str, Any]] = []
    full_budget: list[dict[str, Any]] = []
    for cell in result.cells:
        half = max(1, int(math.floor(cell.n_heads * 0.5 + 0.5)))
        for r in cell.rows:
            if r.kind is not AdaptiveExport:
                continue
            if cell.batch > 1:
                if r.k is not None and abs(r.k - half) < 1e-9 and cell.seq >= 128 and r.efficiency_per_sample:
                    per_sample.append(_measure(cell.label, r.efficiency_per_sample, r.efficiency_per_sample >= 0.90))
                continue
            if r.k == half:
                never_slower.append(_measure(cell.label, r.speedup, r.speedup >= 1.0))
                if cell.seq >= 128:
                    eff.append(_measure(cell.label, r.efficiency, r.efficiency >= 0.95))
                if r.overhead_vs_static is not None:
                    long_seq = cell.seq >= 32
                    limit = 0.03 if long_seq else 0.10
                    (static_long if long_seq else static_short).append(
                        _measure(cell.label, r.overhead_vs_static, r.overhead_vs_static <= limit))
            static = cell.row("static", r.k)
            if r.vs_hf is not None and static is not None and static.vs_hf is not None and static.vs_hf < 0:
                vs_hf.append(_measure(f"{cell.label} k {r.k:g}", r.vs_hf, r.vs_hf < 0))
            if r.overhead_vs_dense is not None:
                full_budget.append(_measure(f"{cell.label} vs {cell.dense_reference}", r.overhead_vs_dense,
                                            r.overhead_vs_dense <= 0.03))
    return [
        _target("speedup over dense at k = H/2, batch 1, every seq", ">= 1.000", never_slower),
        _target("adaptive overhead vs static at k = H/2, batch 1, seq >= 32", "<= +3%", static_long),
        _target("adaptive overhead vs static at k = H/2, batch 1, seq < 32", "<= +10%", static_short),
        _target("efficiency vs the per-sample ideal, per-sample k, batch > 1, seq >= 128", ">= 0.90", per_sample),
        _target("efficiency at k = H/2, batch 1, seq >= 128", ">= 0.95", eff),
        _target("adaptive vs Hugging Face prune_heads where static beats it, batch 1", "< +0%", vs_hf),
        _target("adaptive at k = H overhead vs dense reference, batch 1", "<= +3%", full_budget),
    ]


def _measure(cell: str, value: float, passed: bool) -> dict[str, Any]:
    return {"cell": cell, "value": value, "passed": bool(passed)}


def _target(name: str, threshold: str, measurements: list[dict[str, Any]]) -> TargetCheck:
    return TargetCheck(name, threshold, measurements,
                       all(m["passed"] for m in measurements) if measurements else None)
