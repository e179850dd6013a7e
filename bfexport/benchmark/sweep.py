"""Head-skipping benchmark: ONNX Runtime CPU latency of every flavor, side by side in one run.

For each model, thread count, batch size and sequence length (a *cell*) every variant is
timed in the same loop, so a busy neighbour or a clock change hits all of them alike:

  dense      the strongest dense baseline measured: the plain export (MatMul/Softmax
             attention), the same after ONNX Runtime's transformers optimizer, and dense
             graphs whose attention is one ``com.microsoft.Attention`` or one opset-23
             ``Attention`` node. The fastest (median) is the cell's *dense reference*.
  masked     every head computed, unselected ones zeroed (costs what dense costs).
  static     fixed heads 0..k-1 per layer, pruned at export time (the best case for k).
  adaptive   the product: router in the graph, only the selected heads computed. k is
             forced with budget_thresholds = 1 and head_caps = k, so every sample runs
             exactly k heads per layer (checked on the head_counts output before timing).

Batch 1 runs k = H/4, H/2, 3H/4, H. Batch > 1 gives every sample its own k (head_caps of
shape (batch, layers), per-layer mean = the target): the graph computes the batch's
largest k per layer, so the ideal is reported both from that padded k (what the graph
can achieve) and from the per-sample mean (what a per-sample runtime could).

Method: all sessions of a (model, threads) pair are built first (each with
``session.force_spinning_stop`` so idle sessions do not steal cores), every variant is
warmed up, then runs are interleaved round-robin (the starting variant rotates each
round) with no sleeping, and medians are taken (bfexport.timing). Random weights are fine
for timing: k is forced, and nothing else depends on values.

A quick run (full=False, `bfexport bench` without --full) times one given model as it would
serve (an exported file as is, or a checkpoint's default export, at its own default budgets on
random token ids) side by side with a dense export of the same weights, at the model's own
shape; the head counts the model ran are read from its head_counts output.

Every row reports the median (= p50), p90 and p99 latency and the throughput, items (texts)
per second = batch * runs / total time of the runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bfexport.benchmark.environment import environment
from bfexport.benchmark.graphs import Graph, budget_feeds, cpu_session, prepare_graphs, quick_graphs, token_feeds
from bfexport.benchmark.models import BenchModel, random_model, timing_copy
from bfexport.benchmark.result import BenchmarkResult
from bfexport.benchmark.rows import Cell, Row, compute_rows, ideal_batch, ideal_speedup
from bfexport.benchmark.settings import FULL, MAX_BATCH_ACTIVATION, ModelShape, budgets, per_sample_caps
from bfexport.cost import computed_heads
from bfexport.errors import BfexportError
from bfexport.flavors import AdaptiveExport, DenseExport, ExportConfig
from bfexport.machine import load_average
from bfexport.model import BudgetFormerConfig
from bfexport.names import HEAD_COUNTS
from bfexport.timing import Clock, summarize, time_slots

Progress = Callable[[str, float, int], None]  # (what is running, cells done (fractional), cells in all)


@dataclass
class _Slot:
    """One timed thing in a cell: a session and its feeds."""

    variant: str
    kind: type[ExportConfig]
    k: float | None
    ideal: float
    run: Callable[[], object]
    k_padded: list[int] | None = None
    ideal_per_sample: float | None = None
    peer: bool = False


def _cell_slots(graphs: list[Graph], sessions: list[Any], cfg: BudgetFormerConfig, seq: int, batch: int,
                ks: Sequence[int], seed: int) -> list[_Slot]:
    H, L = cfg.n_heads, cfg.n_layers
    base = token_feeds(cfg, batch, seq, seed)
    slots: list[_Slot] = []

    def runner(session: Any, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        return lambda: session.run(None, feeds)

    half = budgets(H, (0.5,))[0]  # batch > 1: every sample's k around H/2
    for graph, session in zip(graphs, sessions, strict=True):
        if graph.as_exported:
            feeds = {**base, **{name: np.ascontiguousarray(np.broadcast_to(row, (batch, row.shape[1])))
                                for name, row in graph.budget_rows.items()}}
            slots.append(_as_exported_slot(graph, session, cfg, seq, feeds, runner(session, feeds)))
        elif graph.kind is DenseExport:
            slots.append(_Slot(graph.variant, graph.kind, None, 1.0, runner(session, base), peer=graph.peer))
        elif graph.kind.head_sets:  # static, and the peer's pruned graphs; batch > 1: at the mean k only
            assert graph.k is not None  # static graphs carry their fixed k
            if batch == 1 or graph.k == half:
                slots.append(_Slot(graph.variant, graph.kind, graph.k,
                                   ideal_speedup(cfg, seq, [graph.k] * L, router=False), runner(session, base),
                                   peer=graph.peer))
        elif batch > 1 and graph.kind is not AdaptiveExport:
            continue  # batch > 1 compares per-sample budgets with dense and static at their mean
        elif graph.kind.computes_all_heads:  # masked
            k = max(1, H // 2)  # every head is computed whatever k is
            feeds = budget_feeds(cfg, base, np.full((1, L), k))
            _check_heads(session, feeds, np.full((batch, L), k), graph.variant)
            slots.append(_Slot(graph.variant, graph.kind, k, ideal_speedup(cfg, seq, [H] * L, router=True),
                               runner(session, feeds)))
        else:  # adaptive: one session, one slot per budget (batch > 1: per-sample k around H/2)
            for k in ks if batch == 1 else [half]:
                if batch == 1:
                    caps = np.full((1, L), k)
                    feeds = budget_feeds(cfg, base, caps)
                    _check_heads(session, feeds, caps, graph.variant)
                    slots.append(_Slot(graph.variant, graph.kind, k, ideal_speedup(cfg, seq, [k] * L, router=True),
                                       runner(session, feeds)))
                else:
                    caps = per_sample_caps(np.random.default_rng(seed + k), batch, L, H, k)
                    feeds = budget_feeds(cfg, base, caps)
                    _check_heads(session, feeds, caps, graph.variant)
                    padded, own = ideal_batch(cfg, seq, caps)
                    slots.append(_Slot(graph.variant, graph.kind, float(caps.mean()), padded, runner(session, feeds),
                                       k_padded=caps.max(axis=0).tolist(), ideal_per_sample=own))
    return slots


def _as_exported_slot(graph: Graph, session: Any, cfg: BudgetFormerConfig, seq: int, feeds: dict[str, np.ndarray],
                      run: Callable[[], object]) -> _Slot:
    """A graph timed with its own default budgets: k and the ideal from the heads it computes on
    these feeds (head_counts; masked computes every head)."""
    counts = session.run([HEAD_COUNTS], feeds)[0]
    heads, router = computed_heads(graph.kind, counts, cfg.n_heads)
    padded, own = ideal_batch(cfg, seq, heads, router=router)
    batch = counts.shape[0]
    return _Slot(graph.variant, graph.kind, None if graph.kind is DenseExport else float(counts.mean()), padded,
                 run, k_padded=heads.max(axis=0).tolist() if batch > 1 else None,
                 ideal_per_sample=own if batch > 1 else None)


def _check_heads(session: Any, feeds: dict[str, np.ndarray], expected: np.ndarray, variant: str) -> None:
    counts = session.run([HEAD_COUNTS], feeds)[0]
    if not np.array_equal(counts, np.broadcast_to(expected, counts.shape)):
        raise RuntimeError(f"{variant}: head_caps {expected.tolist()} with thresholds 1.0 ran "
                           f"{counts.tolist()} heads; the forced budget did not take")


def run_benchmark(models: Sequence[BenchModel | ModelShape], *, seqs: Sequence[int] = FULL.seqs,
                  threads: Sequence[int] = FULL.threads, batch_sizes: Sequence[int] = FULL.batch_sizes,
                  repeats: int = 15, warmup: int = 3, min_time_s: float = FULL.min_time_s, fusions: str = "dense",
                  seed: int = 0,
                  max_batch_activation: int | None = MAX_BATCH_ACTIVATION, full: bool = True,
                  fractions: Sequence[float] = FULL.fractions, peers: bool = True,
                  progress: Progress | None = None, clock: Clock = time.perf_counter_ns) -> BenchmarkResult:
    """Time every flavor side by side on each model, and compare with the best dense graph
    (full=False: each model as it serves beside a plain dense export, see quick_graphs).

    Args:
        models: BenchModel (weights given, e.g. a checkpoint's) or ModelShape (random weights,
            max_length = the longest seq). A model shorter than the longest seq gets a
            same-weight copy with a longer position table (timing_copy).
        seqs, threads, batch_sizes: the cells, every combination for every model, except
            batch > 1 cells whose activations (batch * seq * d_model values) exceed
            max_batch_activation (default 2**21: the wide shape's batch 32 runs up to seq 128;
            None or 0 = no limit). Skipped cells are listed in the result's notes.
        repeats: interleaved rounds per cell (at least); min_time_s: keep adding rounds until a
            cell has run this long (cheap cells get more rounds, at most 10 * repeats).
        warmup: untimed runs of every variant before each cell.
        fusions: "dense" (default): ONNX Runtime's transformers optimizer on the dense
            candidates only, head-skipping graphs as exported; "all": on every graph; "none".
            A quick run fuses nothing.
        full: False for a quick run: given models only, at seqs up to their max_length.
        fractions: batch-1 budgets, k = fraction * H (batch > 1 always runs per-sample k around H/2).
        peers: time the Hugging Face peer too (hf_peer; skipped with a note without transformers).
        progress: called as progress(label, cells done, cells in all) after every round.
        clock: nanosecond clock (tests pass a fake one; time.process_time_ns counts this process's
            CPU time, which a busy neighbour does not inflate: latency only at 1 thread).

    Returns:
        BenchmarkResult: .cells[i].rows, .to_dict() for JSON.

    Example:
        result = run_benchmark([SHIPPED], seqs=[128], threads=[1], batch_sizes=[1], repeats=5)
        print(result.cells[0].row("adaptive", 4).efficiency)
    """
    for name, values in (("seqs", seqs), ("threads", threads), ("batch_sizes", batch_sizes)):
        if not values or any(int(v) < 1 for v in values):
            raise BfexportError(f"{name} must be a non-empty list of positive integers, got {list(values)}")
    benches, notes = _bench_models(models, max(seqs), seed, full)
    plan: list[tuple[int, int]] = [(batch, seq) for batch in batch_sizes for seq in seqs]  # per model and threads
    cells_of: dict[str, list[tuple[int, int]]] = {}
    for b in benches:
        cells_of[b.name] = []
        for batch, seq in plan:
            size = batch * seq * b.model.config.d_model
            if batch > 1 and max_batch_activation and size > max_batch_activation:
                notes.append(f"{b.name} batch {batch} seq {seq} skipped: {size} activation values > "
                             f"max_batch_activation {max_batch_activation}")
            else:
                cells_of[b.name].append((batch, seq))
    total = sum(len(c) for c in cells_of.values()) * len(threads)
    result = BenchmarkResult(
        settings={"seqs": list(seqs), "threads": list(threads), "batch_sizes": list(batch_sizes), "repeats": repeats,
                  "warmup": warmup, "min_time_s": min_time_s, "fusions": fusions, "seed": seed,
                  "max_batch_activation": max_batch_activation, "mode": "full" if full else "quick",
                  "fractions": list(fractions), "peers": peers, "clock": getattr(clock, "__name__", "custom"),
                  "provider": "CPUExecutionProvider", "dtype": "float32"},
        environment=environment(), models=[], notes=notes)

    def report(label: str, done: float) -> None:
        if progress is not None:
            progress(label, done, total)

    for bench in benches:
        ks = budgets(bench.model.config.n_heads, tuple(fractions))
        report(f"{bench.name}: exporting and checking graphs", len(result.cells))
        graphs, info = prepare_graphs(bench, ks, fusions, peers) if full else quick_graphs(bench)
        result.models.append(info)
        for t in threads:
            if cells_of[bench.name]:
                report(f"{bench.name}: {len(graphs)} sessions, {t} threads", len(result.cells))
                result.cells += _time_cells(bench, graphs, ks, t, cells_of[bench.name], repeats=repeats,
                                            warmup=warmup, min_time_s=min_time_s, seed=seed, clock=clock,
                                            report=report, done=len(result.cells))
    result.environment["loadavg_end"] = load_average()
    return result


def _bench_models(models: Sequence[BenchModel | ModelShape], longest: int, seed: int,
                  full: bool = True) -> tuple[list[BenchModel], list[str]]:
    """Random models for shapes; for given models a copy that takes `longest` tokens if needed
    (a quick run times the given model itself, so longer sequences are refused)."""
    benches, notes = [], []
    for m in models:
        if isinstance(m, ModelShape):
            benches.append(random_model(m, longest, seed))
        elif not full:
            if longest > m.model.config.max_length:
                raise BfexportError(f"seq {longest} exceeds {m.name}'s max_length {m.model.config.max_length}: a "
                                    "quick run times the model as it is (--full times a copy with a longer "
                                    "position table)")
            benches.append(m)
        else:
            model, changes = timing_copy(m.model, longest, seed)
            benches.append(BenchModel(m.name, model, m.source))
            notes += [f"{m.name}: {c}" for c in changes]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise BfexportError(f"model names must differ, got {names}")
    return benches, notes


def _time_cells(bench: BenchModel, graphs: list[Graph], ks: list[int], threads: int, cells: list[tuple[int, int]], *,
                repeats: int, warmup: int, min_time_s: float, seed: int, clock: Clock,
                report: Callable[[str, float], None], done: int) -> list[Cell]:
    """All (batch, seq) cells of one model at one thread count, on one set of sessions (freed on return)."""
    cfg = bench.model.config
    sessions = [cpu_session(g.payload, threads) for g in graphs]
    out: list[Cell] = []
    for batch, seq in cells:
        label = f"{bench.name} seq {seq} batch {batch} threads {threads}"
        slots = _cell_slots(graphs, sessions, cfg, seq, batch, ks, seed)
        base = done + len(out)
        def on_round(rounds: int, planned: int, label: str = label, base: int = base) -> None:
            report(label, base + min(rounds / planned, 1.0))

        samples = time_slots([s.run for s in slots], repeats=repeats, warmup=warmup, min_time_s=min_time_s,
                             clock=clock, on_round=on_round)
        rows = [Row(variant=s.variant, flavor=s.kind.flavor, k=s.k, ideal=s.ideal, k_padded=s.k_padded,
                    ideal_per_sample=s.ideal_per_sample, peer=s.peer, **summarize(x, batch))
                for s, x in zip(slots, samples, strict=True)]
        reference = compute_rows(rows, batch, cfg.n_heads)
        out.append(Cell(bench.name, seq, threads, batch, cfg.n_heads, reference, len(samples[0]), rows))
        report(label, base + 1)
    return out
