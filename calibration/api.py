"""`calibrate`: a target in, per-layer budget thresholds and caps out (the CLI's engine).

Steps, each in its own module: collect and tokenize the data (inputs), run configurations
through the exported model with a per-sample path cache (evaluate), price them in FLOPs (flops)
or in milliseconds from a lookup table measured on the target runtime (latency), search
(search), and for latency targets verify the winner end to end, tightening and searching again
if the measurement misses. The result records the model's fingerprint, the machine and the
baselines it was compared with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers

from bfexport import data as bfdata
from bfexport import summary
from bfexport.calibration_result import CalibrationResult, fingerprint
from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel, load_exported
from bfexport.files import file_sha256
from bfexport.machine import machine
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, INPUT_IDS, SELECTED_HEADS
from bfexport.runtime import OnnxClassifier
from calibration.evaluate import Config, Evaluator, Outcome
from calibration.flops import FlopsModel
from calibration.inputs import CalibrationData, DataSource, collect
from calibration.latency import Batch, LatencyRuntime, LatencyTable, latency_groups, make_batches, profile, verify
from calibration.runtimes import get_runtime
from calibration.search import DEFAULT_GRID, Goal, Point, SearchOutcome, search
from calibration.targets import FlopsTarget, LatencyTarget, Target

ModelSource = str | Path | ExportedModel | OnnxClassifier


@dataclass
class _Scorer:
    """Turns evaluator outcomes into search points: objective, agreement, FLOPs, cost."""

    evaluator: Evaluator
    flops: FlopsModel
    labels: np.ndarray | None
    reference: np.ndarray  # all-heads predictions
    table: LatencyTable | None = None
    percentile: int = 50
    latency: bool = False  # price points in predicted ms (a latency target) rather than the FLOPs ratio

    def point(self, config: Config, outcome: Outcome) -> Point:
        agreement = float((outcome.preds == self.reference).mean())
        accuracy = float((outcome.preds == self.labels).mean()) if self.labels is not None else None
        ratio = self.flops.ratio(outcome.heads)
        latency = (self.table.percentile(outcome.heads, self.percentile)
                   if self.table is not None and self.latency else None)
        return Point(config, latency if latency is not None else ratio, ratio,
                     accuracy if accuracy is not None else agreement, agreement,
                     tuple(round(float(v), 4) for v in outcome.heads.mean(0)), outcome.exact, accuracy, latency)

    def __call__(self, configs: Sequence[Config], exact: bool) -> list[Point]:
        return [self.point(c, o) for c, o in zip(configs, self.evaluator.outcomes(configs, exact), strict=True)]


def load_model(model: ModelSource) -> tuple[ExportedModel, tokenizers.Tokenizer]:
    """The exported model and its embedded tokenizer, from a path or an already loaded model."""
    if isinstance(model, OnnxClassifier):
        exported: ExportedModel = model.exported
    else:
        exported = model if isinstance(model, ExportedModel) else load_exported(model)
    if exported.kind.custom_op:  # its attention runs in ONNX Runtime only as a slow Python op
        raise BfexportError(f"{exported.path}: calibrate the adaptive export of the same checkpoint instead of "
                            "this trt-plugin file (`bfexport convert CKPT -o model.onnx`): the budgets are the "
                            "same, and `bfexport deploy CKPT --backend tensorrt --calibration calibration.json` "
                            "applies them to the TensorRT engine")
    if isinstance(model, OnnxClassifier):
        return exported, model.tokenizer
    if exported.tokenizer_json is None:
        raise BfexportError(f"{exported.path}: no tokenizer embedded; export it with `bfexport convert`")
    return exported, bfdata.tokenizer_from_str(exported.tokenizer_json, str(exported.path), exported.config.vocab_size)


def calibrate(model: ModelSource, data: DataSource, target: Target, *, runtime: str = "ort-cpu",
              threads: int | None = None, batch_size: int = 1, seq_len: int | None = None,
              samples: int | None = None, grid: Sequence[float] = DEFAULT_GRID, max_rounds: int = 10,
              shortlist: int = 8, eval_batch_size: int = 32, latency_batches: int = 48, profile_repeats: int = 5,
              profile_mode: str = "uniform", verify_sessions: int = 5, verify_repeats: int = 5,
              max_attempts: int = 3, head_usage: bool = False, thresholds_only: bool = False,
              runtime_factory: Callable[..., LatencyRuntime] | None = None,
              log: Callable[[str], None] | None = None) -> CalibrationResult:
    """Find per-layer thresholds (and caps) that meet `target`, maximizing accuracy when the
    data is labelled and agreement with the all-heads model otherwise.

    Args:
        model: an exported .onnx path, ExportedModel or OnnxClassifier (adaptive or masked flavor).
        data: a data file, an iterable of (texts, labels) batches, or a forward_loop(feed).
        target: FlopsTarget(ratio) or LatencyTarget(ms, percentile).
        runtime: latency runtime name (see calibration.runtimes.RUNTIMES); latency targets only.
        batch_size / seq_len: the deployment's batch size and fixed padded length (None: the
            data's lengths) for latency targets.
        samples: use at most this many rows.
        thresholds_only: move thresholds only, caps stay at all heads, so every layer keeps choosing its
            budget per input (the report's adaptivity_per_layer says how much it still does).
        runtime_factory: a LatencyRuntime class (or factory) to use instead of `runtime`, e.g. a fake in tests.
    Returns:
        CalibrationResult; raises BfexportError for infeasible targets or unusable data.

    Example:
        result = calibrate("model.onnx", "validation.jsonl.gz", FlopsTarget(0.6), samples=1000)
        result.save("calibration.json")
    """
    if not isinstance(target, (FlopsTarget, LatencyTarget)):
        raise BfexportError(f"target must be FlopsTarget(ratio) or LatencyTarget(ms), got {target!r}")
    check_grid(grid)
    shared = prepare(model, data, [target], runtime=runtime, threads=threads, batch_size=batch_size, seq_len=seq_len,
                     samples=samples, eval_batch_size=eval_batch_size, latency_batches=latency_batches,
                     profile_repeats=profile_repeats, profile_mode=profile_mode, runtime_factory=runtime_factory,
                     log=log)
    return calibrate_prepared(shared, target, grid=grid, max_rounds=max_rounds, shortlist=shortlist,
                              verify_sessions=verify_sessions, verify_repeats=verify_repeats,
                              max_attempts=max_attempts, head_usage=head_usage, thresholds_only=thresholds_only)


@dataclass
class Prepared:
    """What every target calibrated on one model and one data set shares: the tokenized rows,
    the FLOPs model, the evaluator and its path cache, the latency runtime with its batches and
    lookup table (when a latency target or a measurement needs them), and the reference points."""

    model: ModelSource
    exported: ExportedModel
    cal: CalibrationData
    evaluator: Evaluator
    scorer: _Scorer
    all_heads: Config
    cheapest: Config
    rt: LatencyRuntime | None
    batches: list[Batch] | None
    threads: int | None
    batch_size: int
    started: float
    say: Callable[[str], None]


def prepare(model: ModelSource, data: DataSource, targets: Sequence[Target], *, runtime: str = "ort-cpu",
            threads: int | None = None, batch_size: int = 1, seq_len: int | None = None, samples: int | None = None,
            eval_batch_size: int = 32, latency_batches: int = 48, profile_repeats: int = 5,
            profile_mode: str = "uniform", with_runtime: bool = False,
            runtime_factory: Callable[..., LatencyRuntime] | None = None,
            log: Callable[[str], None] | None = None) -> Prepared:
    """Load, tokenize, open the evaluator and, for latency targets (or with_runtime), the latency
    runtime and its measurement batches (profiled for latency targets): the work that several
    targets on the same model and data share (see calibrate for the arguments). Every FLOPs
    target is checked for feasibility before the model runs."""
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    exported, tokenizer = load_model(model)
    cfg = exported.config
    L, H = cfg.n_layers, cfg.n_heads
    cal = collect(data, cfg, tokenizer, samples=samples, seq_len=seq_len)
    say(f"{len(cal)} samples from {cal.source} ({'labelled' if cal.labels is not None else 'unlabelled'})")
    flops = FlopsModel(cfg, cal.lengths)
    for target in targets:
        if isinstance(target, FlopsTarget):  # priced without running the model: fail before any work
            _check_flops_feasible(target, flops.ratio(np.ones((len(cal), L), dtype=np.int64)))
    evaluator = Evaluator(exported, cal, threads=threads, batch_size=eval_batch_size)
    all_heads, cheapest = Config.uniform(1.0, H, L), Config.uniform(1.0, 1, L)
    ref_outcome, _ = evaluator.outcomes([all_heads, cheapest])
    scorer = _Scorer(evaluator, flops, cal.labels, ref_outcome.preds)

    rt: LatencyRuntime | None = None
    batches = None
    latency = any(isinstance(t, LatencyTarget) for t in targets)
    if latency or with_runtime:
        factory = runtime_factory or get_runtime(runtime)
        rt = factory(exported, threads)
        groups = latency_groups(len(cal), batch_size, latency_batches)
        batches = make_batches(cal, groups)
        if latency:
            say(f"profiling {rt.describe()['name']}: {len(batches)} batches of {batch_size}, k = 1..{H}")
            scorer.table = profile(rt, batches, groups, L, H, repeats=profile_repeats, mode=profile_mode)
    return Prepared(model, exported, cal, evaluator, scorer, all_heads, cheapest, rt, batches, threads, batch_size,
                    started, say)


def calibrate_prepared(shared: Prepared, target: Target, *, grid: Sequence[float] = DEFAULT_GRID,
                       max_rounds: int = 10, shortlist: int = 8, verify_sessions: int = 5, verify_repeats: int = 5,
                       max_attempts: int = 3, head_usage: bool = False,
                       thresholds_only: bool = False) -> CalibrationResult:
    """calibrate() for one target on prepared shared state; the evaluator's path cache keeps what
    earlier targets ran, so a later target runs only the paths they did not."""
    exported, cal, evaluator, scorer = shared.exported, shared.cal, shared.evaluator, shared.scorer
    all_heads, cheapest, rt, batches, say = shared.all_heads, shared.cheapest, shared.rt, shared.batches, shared.say
    started = shared.started
    shared.started = time.perf_counter()  # a later target's seconds count from here
    L, H = exported.config.n_layers, exported.config.n_heads
    check_grid(grid)
    scorer.latency = isinstance(target, LatencyTarget)
    if isinstance(target, LatencyTarget):
        if scorer.table is None:
            raise BfexportError("a latency target needs a profiled runtime: prepare() it with that target")
        scorer.percentile = target.percentile
        target = target.resolve(scorer.table.forced(H, target.percentile))
    ref_point, min_point = scorer([all_heads, cheapest], True)
    if isinstance(target, LatencyTarget):
        _check_latency_feasible(target, min_point.cost, ref_point.cost, rt)

    verification: dict[str, Any] | None
    attempts: list[dict[str, Any]]
    if isinstance(target, FlopsTarget):
        say(f"searching: FLOPs ratio <= {target.limit:.4g}")
        outcome = search(scorer, Goal(target.limit, target.floor), L, H, grid=grid, fallback_starts=[min_point],
                         max_rounds=max_rounds, shortlist=shortlist, thresholds_only=thresholds_only, log=say)
        verification, attempts = None, []
    else:
        assert rt is not None and batches is not None  # set above for latency targets
        outcome, verification, attempts, target = _latency_search(
            scorer, target, rt, batches, all_heads, min_point, ref_point, grid=grid, max_rounds=max_rounds,
            shortlist=shortlist, max_attempts=max_attempts, sessions=verify_sessions, repeats=verify_repeats, say=say,
            thresholds_only=thresholds_only)

    best = outcome.best
    best_outcome = evaluator.outcomes([best.config])[0]
    result = _result(exported, shared.model, cal, target, outcome, best, best_outcome, ref_point, min_point, scorer,
                     evaluator, rt, verification, attempts, time.perf_counter() - started, shared.threads,
                     shared.batch_size)
    if head_usage:
        assert result.report is not None  # _result always fills it
        result.report["head_usage"] = _head_usage(evaluator, best.config)
    return result


def _latency_search(scorer: _Scorer, target: LatencyTarget, rt: LatencyRuntime, batches: list[Batch],
                    all_heads: Config, min_point: Point, ref_point: Point, *, grid: Sequence[float], max_rounds: int,
                    shortlist: int, max_attempts: int, sessions: int, repeats: int, say: Callable[[str], None],
                    thresholds_only: bool) -> tuple[SearchOutcome, dict[str, Any], list[dict[str, Any]], LatencyTarget]:
    """Search on the lookup table, verify end to end, and re-aim while the measurement misses
    the target or lands below its band (the table is a prediction; the machine drifts).

    A relative target is checked against the all-heads latency measured interleaved with the
    candidate in the same sessions, so drift between profiling and verification cancels out.
    Returns the best verified attempt: met first, then objective, then the faster (as Goal.key).
    """
    assert scorer.table is not None  # profiled before the search
    key = f"p{target.percentile}"
    limit, tried = target.limit, []
    for attempt in range(1, max_attempts + 1):
        say(f"searching: predicted {key} <= {limit:.4g} ms (attempt {attempt})")
        outcome = search(scorer, Goal(limit, limit * (1 - target.tolerance)), scorer.table.n_layers,
                         scorer.table.n_heads, grid=grid, fallback_starts=[min_point], max_rounds=max_rounds,
                         shortlist=shortlist, thresholds_only=thresholds_only, log=say)
        say(f"verifying end to end in {sessions} fresh sessions")
        v = verify(rt, batches, outcome.best.config, all_heads, percentile=target.percentile, target_ms=target.ms,
                   fraction=target.fraction, sessions=sessions, repeats=repeats)
        goal_ms, measured = v["target_ms"], v[key]
        tried.append((outcome, v, {"limit_ms": limit, "predicted_ms": outcome.best.cost, "measured_ms": measured,
                                   "target_ms": goal_ms, "met": v["met"]}))
        cheaper_by_choice = outcome.best.cost < limit * (1 - target.tolerance)  # as accurate as any in the band
        if v["met"] and (measured >= goal_ms * (1 - target.tolerance) or cheaper_by_choice):
            break
        new_limit = limit * goal_ms / measured * (0.99 if not v["met"] else 1.0)
        new_limit = min(new_limit, ref_point.cost)
        if new_limit < min_point.cost or abs(new_limit - limit) < 1e-3 * limit:
            break
        limit = new_limit
    outcome, v, _ = max(tried, key=lambda t: (t[1]["met"], t[0].best.objective, -t[1][key], t[0].best.agreement))
    if target.fraction is not None:
        target = replace(target, ms=v["target_ms"])
    return outcome, v, [{**t[2], "chosen": t[0] is outcome} for t in tried], target


def check_grid(grid: Sequence[float]) -> None:
    if not grid or not all(0 < t <= 1 for t in grid):
        raise BfexportError(f"threshold grid values must lie in (0, 1], got {list(grid)}")


def _check_flops_feasible(target: FlopsTarget, lo: float) -> None:
    """Targets below one head in every layer or above the dense model are errors naming the range."""
    span = f"feasible range {lo:.3f} (one head in every layer) to 1.000 (dense)"
    if target.ratio < lo:
        raise BfexportError(f"target FLOPs ratio {target.ratio:g} is infeasible: one head in every layer already "
                            f"costs {lo:.3f} of the dense model on this data; {span}")
    if target.ratio > 1.0:
        raise BfexportError(f"target FLOPs ratio {target.ratio:g} is above the dense model (1.0): nothing to "
                            f"calibrate; {span}")


def _check_latency_feasible(target: LatencyTarget, lo: float, hi: float, rt: LatencyRuntime | None) -> None:
    """Latency targets outside [one head everywhere, all heads), as measured, name the range."""
    assert target.ms is not None  # resolved (LatencyTarget.resolve) before the check
    where = rt.describe()["name"] if rt is not None else "this runtime"
    span = (f"feasible range {lo:.3f} ms (one head in every layer) to {hi:.3f} ms (all heads), "
            f"p{target.percentile} on {where}")
    asked = f"target p{target.percentile} latency {target.ms:.4g} ms" + (
        f" ({target.fraction:g} x all heads)" if target.fraction is not None else "")
    if target.ms < lo:
        raise BfexportError(f"{asked} is infeasible: one head in every layer measures {lo:.3f} ms; {span}")
    if target.ms >= hi:
        raise BfexportError(f"{asked} is at or above the all-heads latency ({hi:.3f} ms): nothing to calibrate; {span}")


def _result(exported: ExportedModel, model: ModelSource, cal: CalibrationData, target: Target, outcome: Any,
            best: Point, best_outcome: Outcome, ref_point: Point, min_point: Point, scorer: _Scorer,
            evaluator: Evaluator, rt: LatencyRuntime | None, verification: dict[str, Any] | None,
            attempts: list[dict[str, Any]], seconds: float, threads: int | None, batch_size: int) -> CalibrationResult:
    labelled = cal.labels is not None
    notes: list[str] = []
    if exported.kind.computes_all_heads:
        notes.append("this masked file computes every head and zeroes the unselected ones: it saves no compute, "
                     "and its FLOPs ratio is nominal (what the adaptive export of the same checkpoint would spend)")
    within = target.floor <= best.cost <= target.limit if isinstance(target, FlopsTarget) else True
    if isinstance(target, FlopsTarget) and not within:
        in_band = [p for p in outcome.tried if p.exact and target.floor <= p.cost <= target.limit]
        if in_band:
            there = max(p.objective for p in in_band)
            why = (f"the configurations tried in the band are less accurate (best there {there:.4f})"
                   if there < best.objective else "the configurations tried in the band are no more accurate, and "
                   "among equals the cheapest wins")
            notes.append(f"chose FLOPs ratio {best.flops_ratio:.4f}, below the band {target.tolerance:g} under the "
                         f"target {target.ratio:g}: {why}")
        else:
            notes.append(f"could not get within {target.tolerance:g} of the target: the closest configuration "
                         f"found costs {best.flops_ratio:.4f} (target {target.ratio:g}); the model's cost moves in "
                         "steps here")
    if cal.unlabelled_rows:
        notes.append(f"{cal.unlabelled_rows} rows have no label: optimized agreement with the all-heads model")
    if outcome.baseline is None:
        notes.append("no single global threshold meets the target; the search started from one head in every layer")
    met = verification["met"] if verification is not None else best.flops_ratio <= target.limit
    if verification is not None:
        assert isinstance(target, LatencyTarget)  # only latency targets are verified end to end
        within = target.floor <= verification[f"p{target.percentile}"] <= target.limit
        if met and not within:
            notes.append(f"verified p{target.percentile} {verification[f'p{target.percentile}']:.3f} ms is below the "
                         f"band under the target {target.ms:.4g} ms: the device measured faster than its profile")
        if not met:
            notes.append(f"verified p{target.percentile} {verification[f'p{target.percentile}']:.3f} ms misses the "
                         f"target {target.ms:g} ms after {len(attempts)} attempt(s)")
    same_or_higher = min((p for p in outcome.global_points if p.cost >= best.cost), key=lambda p: p.cost, default=None)
    path = exported.path
    model_info = {"path": str(Path(path).resolve()), "fingerprint": fingerprint(exported), "flavor": exported.flavor,
                  "file_sha256": file_sha256(path) if Path(path).is_file() else None,
                  "n_layers": exported.config.n_layers, "n_heads": exported.config.n_heads,
                  "default_thresholds": exported.default_thresholds, "default_caps": exported.default_caps}
    lengths = cal.lengths
    data_info: dict[str, Any] = {
        "source": cal.source, "samples": len(cal), "labelled": labelled, "objective": "accuracy" if labelled
        else "agreement", "mean_length": float(lengths.mean()), "max_length": int(lengths.max()),
        "seq_len": cal.seq_len, "batch_size": batch_size}
    runtime_info = rt.describe() if rt is not None else {"name": "ort-cpu", "used_for": "accuracy evaluation",
                                                        "intra_op_threads": threads or "default"}
    s = evaluator.stats
    search_info = {"seconds": round(seconds, 2), "model_seconds": round(s.seconds, 2), "rows_run": s.rows,
                   "session_calls": s.calls, "exact_configs": s.cached_configs, "screened_configs": s.screened,
                   "routing_mismatches": s.mismatches, "path_cache": evaluator.exact_tracking,
                   "rounds": outcome.rounds, "points_tried": len(outcome.tried),
                   "start": outcome.start.to_json(), "attempts": attempts}
    baselines = {"all_heads": _brief(ref_point), "one_head": _brief(min_point),
                 "global_threshold": _brief(outcome.baseline) if outcome.baseline else None,
                 "global_same_or_higher_cost": _brief(same_or_higher) if same_or_higher else None}
    if outcome.baseline is not None:
        baselines["objective_gain_over_global"] = best.objective - outcome.baseline.objective
    K = best_outcome.heads
    report = {"points": [p.to_json() for p in outcome.tried], "global": [p.to_json() for p in outcome.global_points],
              "chosen": best.to_json(), "all_heads": ref_point.to_json(), "one_head": min_point.to_json(),
              "baseline": outcome.baseline.to_json() if outcome.baseline else None,
              "k_histogram_per_layer": [np.bincount(K[:, layer], minlength=exported.config.n_heads + 1)[1:].tolist()
                                        for layer in range(K.shape[1])],
              "flops_share_per_layer": scorer.flops.per_layer_ratio(K),
              "latency_table": scorer.table.to_json() if scorer.table is not None else None,
              "target": target.to_json(), "objective": data_info["objective"],
              "search_limit": next((a["limit_ms"] for a in attempts if a.get("chosen")), target.limit)}
    return CalibrationResult(
        thresholds=list(best.config.thresholds), caps=list(best.config.caps), target=target.to_json(),
        achieved_flops_ratio=best.flops_ratio, objective=data_info["objective"], accuracy=best.accuracy,
        agreement=best.agreement, target_met=bool(met), within_tolerance=bool(within),
        mean_heads_per_layer=list(best.mean_heads), adaptivity_per_layer=summary.adaptivity(K, exported.config.n_heads),
        baselines=baselines, model=model_info, data=data_info,
        machine=machine(), runtime=runtime_info, search=search_info, latency_ms=verification, notes=notes,
        cost_unit="flops_ratio" if isinstance(target, FlopsTarget) else "ms",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), report=report)


def _brief(p: Point) -> dict[str, Any]:
    return p.to_json()


def _head_usage(evaluator: Evaluator, config: Config) -> list[list[float]]:
    """Fraction of samples that run each head, per layer, at `config` (one extra pass)."""
    cal = evaluator.data
    order = np.argsort(cal.lengths, kind="stable")
    selected = []
    for start in range(0, len(order), evaluator.batch_size):
        ids, mask = cal.batch(order[start:start + evaluator.batch_size])
        selected += evaluator.session.run([SELECTED_HEADS], {
            INPUT_IDS: ids, ATTENTION_MASK: mask,
            BUDGET_THRESHOLDS: np.asarray([config.thresholds], dtype=np.float32),
            HEAD_CAPS: np.asarray([config.caps], dtype=np.int64)})
    usage: list[list[float]] = summary.head_usage(np.concatenate(selected), evaluator.n_heads).round(4).tolist()
    return usage
