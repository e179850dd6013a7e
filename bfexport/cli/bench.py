"""bfexport bench: ONNX Runtime CPU latency of a model (quick) or of every flavor (--full) vs dense, side by side."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from bfexport.checkpoint import load_checkpoint
from bfexport.cli.args import THREADS, console, detail, emit, json_option, report_console
from bfexport.errors import BfexportError
from bfexport.exported import load_exported
from converters.benchmark import (
    BERT_BASE,
    FUSION_MODES,
    MAX_BATCH_ACTIVATION,
    BenchModel,
    ModelShape,
    Progress as ProgressFn,
    Row,
    headers,
    load_average,
    row_cells,
    run_benchmark,
)
from converters.onnx.rebuild import rebuild_model

QUIET_LOAD = 0.5  # a 1-minute load average above this at the start means someone else is using the cores


@contextlib.contextmanager
def progress_bar() -> Iterator[ProgressFn]:
    """A rich progress bar on stderr, redrawn only when the benchmark reports (once per round),
    so no refresh thread competes with the timed runs for the cores."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, auto_refresh=False, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def report(label: str, done: float, total: int) -> None:
            bar.update(task, description=label, completed=int(done), total=total, refresh=True)

        yield report


def warn_if_busy(loadavg: float | None) -> None:
    """On stderr, before the run, so the user can stop it and wait."""
    if loadavg is not None and loadavg > QUIET_LOAD:
        console.print(f"[yellow]warning:[/yellow] load average {loadavg} at the start: other work is using the "
                      "cores, so these timings are noisy. Rerun on a quiet machine.")


def print_result(r: dict[str, Any]) -> None:
    """The human rendering of BenchmarkResult.to_dict() on stdout: one table per cell, then the targets."""
    env, out = r["environment"], report_console
    out.print(f"ONNX Runtime {env['onnxruntime']} CPU, {escape(str(env['cpu']))} ({env['cpu_count']} cores); "
              f"load average {env['loadavg_start']} at start, {env['loadavg_end']} at end")
    for m in r["models"]:
        out.print(f"[bold]{escape(m['name'])}[/bold]: d {m['d_model']}, {m['n_heads']} heads, {m['n_layers']} layers, "
                  f"FFN {m['d_ff']} ({escape(m['source'])}); dense candidates: {escape(', '.join(m['dense_variants']))}")
        for note in m["notes"]:
            out.print(f"  note: {note}", markup=False)
    for note in r["notes"]:
        out.print(f"note: {note}", markup=False)
    for cell in r["cells"]:
        table = Table(title=f"{cell['model']}  seq {cell['seq']}  batch {cell['batch']}  threads {cell['threads']}"
                            f"  ({cell['rounds']} rounds; ms = median; * = dense reference)", title_justify="left")
        for i, h in enumerate(headers(cell["batch"])):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in cell["rows"]:
            table.add_row(*(escape(c) for c in row_cells(_row(row), cell["dense_reference"], cell["batch"])))
        out.print(table)
    if r["targets"]:
        print_targets(r["targets"])


def print_targets(targets: list[dict[str, Any]]) -> None:
    table = Table(title="head-skipping targets", title_justify="left")
    for h in ("target", "threshold", "cells", "worst", "result"):
        table.add_column(h)
    for t in targets:
        values = [m["value"] for m in t["measurements"]]
        if not values:
            worst = ""
        elif t["threshold"].startswith(">="):
            worst = f"{min(values):.3f}"
        else:
            worst = f"{max(values) * 100:+.1f}%"
        verdict = ("not measured" if t["passed"] is None else "[green]pass[/green]" if t["passed"]
                   else "[red]fail[/red]")
        table.add_row(t["name"], t["threshold"], str(len(values)), worst, verdict)
    report_console.print(table)


def _row(row: dict[str, Any]) -> Row:
    """A Row back from its JSON dict (JSON has no NaN: None back to NaN where Row uses it)."""
    fields: dict[str, Any] = {k: float("nan") if v is None and k in ("speedup", "efficiency") else v
                              for k, v in row.items()}
    return Row(**fields)


def bert_shape(layers: int) -> ModelShape:
    return ModelShape(BERT_BASE.name, BERT_BASE.d_model, BERT_BASE.n_heads, layers, BERT_BASE.d_ff,
                      BERT_BASE.vocab_size)


@dataclass(frozen=True)
class Sweep:
    """The cells and seconds per cell a run takes when no option says otherwise."""

    seqs: tuple[int, ...]
    threads: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    min_time_s: float


FULL = Sweep(seqs=(128, 512), threads=(1, 2), batch_sizes=(1, 8), min_time_s=3.0)


def quick_sweep(max_length: int) -> Sweep:
    return Sweep(seqs=(max_length,), threads=(1,), batch_sizes=(1,), min_time_s=1.0)


def load_target(target: str) -> BenchModel:
    """A checkpoint directory or an exported .onnx file. A file's weights are rebuilt into PyTorch
    for the dense reference (and, with --full, for every flavor's export)."""
    name = Path(target).resolve().name or "model"
    if Path(target).is_dir():
        return BenchModel(name, load_checkpoint(target), f"checkpoint weights ({target})")
    exported = load_exported(target)
    return BenchModel(name, rebuild_model(exported), f"exported file ({target}, {exported.flavor})", exported)


@click.command("bench")
@click.argument("target", type=click.Path(exists=True))
@click.option("--full", is_flag=True, help="The full sweep: every flavor at forced k, a BERT-base-shaped model, "
                                          "seq 128 and 512, 1 and 2 threads, batch 1 and 8 (minutes).")
@click.option("--seq", "seqs", type=click.IntRange(min=1), multiple=True,
              help="Sequence length (repeatable) [default: the model's max_length; --full: 128, 512].")
@click.option("--threads", "threads", type=THREADS, multiple=True,
              help="ONNX Runtime intra-op threads (repeatable) [default: 1; --full: 1, 2].")
@click.option("--batch", "batch_sizes", type=click.IntRange(min=1), multiple=True,
              help="Batch size (repeatable) [default: 1; --full: 1, 8]; with --full above 1 every sample gets its own k.")
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
              help="Interleaved rounds per cell (at least).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed runs of every variant before each cell.")
@click.option("--min-time", "min_time_s", type=click.FloatRange(min=0), default=None,
              help="Add rounds until a cell has run this many seconds (at most 10x --repeats) [default: 1; --full: 3].")
@click.option("--bert-base/--no-bert-base", default=True, show_default=True,
              help="With --full: also time a BERT-base-shaped model (d 768, 12 heads, FFN 3072) with random weights.")
@click.option("--bert-layers", type=click.IntRange(min=1, max=64), default=BERT_BASE.n_layers, show_default=True,
              help="Layers of the BERT-base-shaped model (ratios are per layer; 12 is the real depth).")
@click.option("--fusions", type=click.Choice(FUSION_MODES), default="dense", show_default=True,
              help="With --full: which graphs ONNX Runtime's transformers optimizer fuses: the dense candidates only "
                   "(head-skipping graphs as bfexport exports them), all graphs, or none.")
@click.option("--max-batch-activation", type=click.IntRange(min=0), default=MAX_BATCH_ACTIVATION,
              show_default=True, help="Skip batch > 1 cells with more than this many batch*seq*d_model "
                                      "values (0 = no limit).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for random weights, token ids and per-sample caps.")
@json_option
def command(target: str, full: bool, seqs: tuple[int, ...], threads: tuple[int, ...], batch_sizes: tuple[int, ...],
            repeats: int, warmup: int, min_time_s: float | None, bert_base: bool, bert_layers: int, fusions: str,
            max_batch_activation: int, seed: int, as_json: bool) -> None:
    """Time TARGET (a checkpoint directory or an exported .onnx) on ONNX Runtime (CPU).

    \b
    By default a quick run (seconds): the model as it serves (an .onnx as is, a
    checkpoint's default export) at its own shape and default budgets on random token
    ids, side by side with a dense export of the same weights. Every row: median (p50),
    p90 and p99 latency in ms, throughput in items/s, speedup over dense, the ideal
    (FLOP-proportional) speedup at the heads it ran, and efficiency = speedup / ideal.

    \b
    --full: the head-skipping sweep. For each threads x batch x seq cell the dense graphs
    (plain, transformers-optimizer-fused, com.microsoft.Attention, opset-23 Attention),
    masked, static(k) and adaptive are warmed up, then run interleaved round-robin.
    Batch 1: k = H/4, H/2, 3H/4, H, forced with thresholds 1.0 and head caps k. Batch > 1:
    every sample its own k around each target. A --seq beyond the model's max_length
    times a copy with the same weights and a longer position table (extra positions
    random); an .onnx is timed through exports of its rebuilt weights.

    \b
    Timings need a quiet machine: the load average is recorded. This is a benchmark, not a
    check: the exit code is 0 whatever the targets say. The standard sweep, with files
    written, is benchmarks/head_skipping.py.
    """
    bench = load_target(target)
    sweep = FULL if full else quick_sweep(bench.model.config.max_length)
    if not full:
        ctx = click.get_current_context()
        given = [flag for flag, name in (("--bert-base", "bert_base"), ("--bert-layers", "bert_layers"),
                                         ("--fusions", "fusions"))
                 if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT and ctx.params[name]]
        if given:
            raise BfexportError(f"{', '.join(given)}: only with --full (a quick run times the model as it serves)")
    models: list[BenchModel | ModelShape] = [bench]
    if full and bert_base:
        models.append(bert_shape(bert_layers))
    warn_if_busy(load_average())
    with progress_bar() as report:
        result = run_benchmark(models, seqs=sorted(set(seqs or sweep.seqs)), threads=sorted(set(threads or sweep.threads)),
                               batch_sizes=sorted(set(batch_sizes or sweep.batch_sizes)), repeats=repeats,
                               warmup=warmup, min_time_s=sweep.min_time_s if min_time_s is None else min_time_s,
                               fusions=fusions if full else "none", seed=seed,
                               max_batch_activation=max_batch_activation or None, full=full, progress=report)
    env = result.environment
    detail(f"{env['platform']}, Python {env['python']}, onnx {env['onnx']}, torch {env['torch']}, numpy {env['numpy']}; "
           f"settings {json.dumps(result.settings, sort_keys=True)}")
    emit(result.to_dict(), as_json, print_result)
