"""A ladder of operating points from one calibration run: several targets (FLOPs ratios or
fractions of the all-heads latency) on one model and one data set.

Everything the targets can share is done once (`api.prepare`): tokenizing, the evaluator and its
per-sample path cache, the latency runtime and its profile. Each rung is then searched exactly as
`calibrate` searches a single target (`api.calibrate_prepared`), with the cache warm from the
rungs above it. A target of 1.0 is the full model (all heads in every layer), the rung a
controller returns to when load is low. At the end every rung is timed end to end on the
runtime, interleaved with the others in fresh sessions, so their latencies compare side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from bfexport.calibration_result import CalibrationResult, fingerprint
from bfexport.errors import BfexportError
from bfexport.ladder_result import LadderResult, Rung
from bfexport.machine import machine
from calibration.api import ModelSource, Prepared, calibrate_prepared, check_grid, prepare
from calibration.evaluate import Config
from calibration.inputs import DataSource
from calibration.latency import LatencyRuntime, percentiles, session_samples
from calibration.search import DEFAULT_GRID, Point
from calibration.targets import FlopsTarget, LatencyTarget, Target


def ladder_targets(values: Sequence[float], unit: str, *, percentile: int = 50,
                   tolerance: float | None = None) -> list[tuple[float, Target | None]]:
    """(value, target) per rung, highest first; None for 1.0, the full model. Values must be
    distinct and in (0, 1]."""
    if unit not in ("flops_ratio", "latency_fraction"):
        raise BfexportError(f"ladder unit must be flops_ratio or latency_fraction, got {unit!r}")
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
                             for v in values):
        raise BfexportError(f"ladder values must lie in (0, 1] (1.0 is the full model), got {list(values)}")
    if len(set(values)) != len(values):
        raise BfexportError(f"ladder values must be distinct, got {list(values)}")
    given: dict[str, Any] = {"tolerance": tolerance} if tolerance is not None else {}
    out: list[tuple[float, Target | None]] = []
    for v in sorted(values, reverse=True):
        if v == 1.0:
            out.append((1.0, None))
        elif unit == "flops_ratio":
            out.append((float(v), FlopsTarget(float(v), **given)))
        else:
            out.append((float(v), LatencyTarget(fraction=float(v), percentile=percentile, **given)))
    return out


def calibrate_ladder(model: ModelSource, data: DataSource, values: Sequence[float], *, unit: str = "flops_ratio",
                     percentile: int = 50, tolerance: float | None = None, runtime: str = "ort-cpu",
                     threads: int | None = None, batch_size: int = 1, seq_len: int | None = None,
                     samples: int | None = None, grid: Sequence[float] = DEFAULT_GRID, max_rounds: int = 10,
                     shortlist: int = 8, verify_sessions: int = 5, verify_repeats: int = 5,
                     measure_sessions: int = 3, measure_repeats: int = 3, thresholds_only: bool = False,
                     runtime_factory: Callable[..., LatencyRuntime] | None = None,
                     log: Callable[[str], None] | None = None) -> tuple[LadderResult, list[CalibrationResult | None]]:
    """Calibrate every rung of a ladder in one run; returns the ladder (top rung first, after
    `best_points`) and each target's own CalibrationResult (None for the full model), in target
    order.

    Args:
        values: targets, e.g. (1.0, 0.85, 0.7, 0.55): FLOPs ratios (unit "flops_ratio") or fractions
            of the all-heads latency (unit "latency_fraction", at `percentile`); 1.0 is the full model.
        measure_sessions / measure_repeats: the end-to-end timing of every rung, interleaved.
        thresholds_only: every rung moves thresholds only (caps stay at all heads), as calibrate's.
        Other arguments as for calibrate().

    Example:
        ladder, _ = calibrate_ladder("model.onnx", "validation.jsonl.gz", [1.0, 0.85, 0.7, 0.55])
        ladder.save("ladder.json")
    """
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    rungs = ladder_targets(values, unit, percentile=percentile, tolerance=tolerance)
    check_grid(grid)
    targets = [t for _, t in rungs if t is not None]
    shared = prepare(model, data, targets, runtime=runtime, threads=threads, batch_size=batch_size, seq_len=seq_len,
                     samples=samples, with_runtime=True, runtime_factory=runtime_factory, log=say)
    prepared_s = time.perf_counter() - started
    results: list[CalibrationResult | None] = []
    for value, target in rungs:
        if target is None:
            results.append(None)
            continue
        say(f"rung {value:g}: {target.describe()}")
        results.append(calibrate_prepared(shared, target, grid=grid, max_rounds=max_rounds, shortlist=shortlist,
                                          verify_sessions=verify_sessions, verify_repeats=verify_repeats,
                                          thresholds_only=thresholds_only))
    configs = [shared.all_heads if r is None else Config(tuple(r.thresholds), tuple(r.caps)) for r in results]
    say(f"timing {len(configs)} rungs end to end, interleaved, in {measure_sessions} fresh sessions")
    latencies, measurement = measure_rungs(shared, configs, sessions=measure_sessions, repeats=measure_repeats)
    full = shared.scorer([shared.all_heads], True)[0]
    searched = [_rung(value, result, full, lat) for (value, _), result, lat in zip(rungs, results, latencies,
                                                                                     strict=True)]
    ladder = best_points(searched, unit, percentile)
    for rung in ladder:
        for note in rung.notes:
            if note.startswith(BETTER) or note.startswith(MERGED):
                say(f"rung {rung.target:g}: {note}")
    exported, cal = shared.exported, shared.cal
    assert shared.rt is not None  # prepare(with_runtime=True)
    s = shared.evaluator.stats
    out = LadderResult(
        unit=unit, rungs=ladder,
        model={"path": str(exported.path), "fingerprint": fingerprint(exported), "flavor": exported.flavor,
               "n_layers": exported.config.n_layers, "n_heads": exported.config.n_heads},
        data={"source": cal.source, "samples": len(cal), "labelled": cal.labels is not None,
              "objective": "accuracy" if cal.labels is not None else "agreement", "batch_size": batch_size,
              "seq_len": cal.seq_len},
        runtime=shared.rt.describe(), measurement=measurement, machine=machine(),
        search={"seconds": round(time.perf_counter() - started, 2), "shared_setup_seconds": round(prepared_s, 2),
                "rows_run": s.rows, "session_calls": s.calls, "exact_configs": s.cached_configs,
                "routing_mismatches": s.mismatches,
                "rung_seconds": [None if r is None else r.search["seconds"] for r in results]},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return out, results


def measure_rungs(shared: Prepared, configs: Sequence[Config], *, sessions: int = 3,
                  repeats: int = 3) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Milliseconds per call of every configuration, interleaved per batch, pooled over `sessions`
    fresh sessions of the runtime: p50/p90/p95/p99 per configuration."""
    rt, batches = shared.rt, shared.batches
    if rt is None or batches is None:
        raise BfexportError("internal: measuring rungs needs a runtime (prepare(with_runtime=True))")
    runs = session_samples(rt, batches, configs, sessions=sessions, repeats=repeats)
    pooled = [np.concatenate([run[i] for run in runs]) for i in range(len(configs))]
    out = [percentiles(ms) | {"mean": float(ms.mean())} for ms in pooled]
    info = {"sessions": len(runs), "repeats": repeats, "batches": len(batches), "batch_size": shared.batch_size,
            "calls_per_rung": len(pooled[0]), "interleaved": True}
    return out, info


BETTER = "took the point calibrated for target"
MERGED = "also serves target"


def best_points(rungs: Sequence[Rung], unit: str, percentile: int = 50) -> list[Rung]:
    """Each rung below the top takes the most accurate point of the ladder (ties to the cheaper)
    that meets its target as timed end to end; its own point stays when none beats it. A rung
    that then repeats the one above is merged into it: a controller step that changes nothing
    only delays the next one. Costs are FLOPs ratios, or latency at `percentile` as a fraction
    of the top rung's."""
    def cost(r: Rung) -> float:
        if unit == "flops_ratio":
            return r.flops_ratio
        return r.latency_ms[f"p{percentile}"] / rungs[0].latency_ms[f"p{percentile}"]

    def score(r: Rung) -> tuple[float, float]:
        return (r.agreement if r.accuracy is None else r.accuracy, -cost(r))

    out: list[Rung] = [rungs[0]]
    for rung in rungs[1:]:
        fits = [r for r in rungs[1:] if r is not rung and cost(r) <= rung.target and score(r) > score(rung)]
        if fits:
            donor = max(fits, key=score)
            rung = replace(donor, target=rung.target, target_met=True, full=False,
                           notes=[f"{BETTER} {donor.target:g}: more accurate, and {cost(donor):.3f} meets this "
                                  f"target", *donor.notes])
        above = out[-1]
        if (rung.thresholds, rung.caps) == (above.thresholds, above.caps):
            out[-1] = replace(above, notes=[*above.notes, f"{MERGED} {rung.target:g} (the same point)"])
        else:
            out.append(rung)
    return out


def _rung(value: float, result: CalibrationResult | None, full: Point, latency: dict[str, float]) -> Rung:
    if result is None:
        return Rung(target=1.0, thresholds=list(full.config.thresholds), caps=list(full.config.caps),
                    latency_ms=latency, accuracy=full.accuracy, agreement=full.agreement,
                    flops_ratio=full.flops_ratio, mean_heads_per_layer=list(full.mean_heads), target_met=True,
                    full=True, notes=["all heads in every layer: the full model"])
    return Rung(target=value, thresholds=list(result.thresholds), caps=list(result.caps), latency_ms=latency,
                accuracy=result.accuracy, agreement=result.agreement, flops_ratio=result.achieved_flops_ratio,
                mean_heads_per_layer=list(result.mean_heads_per_layer), target_met=result.target_met,
                notes=list(result.notes))

