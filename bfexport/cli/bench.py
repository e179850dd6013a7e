"""bfexport bench: ONNX Runtime CPU latency of every flavor vs the best dense graph, side by side."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bfexport.checkpoint import load_checkpoint
from bfexport.cli.args import THREADS, checkpoint_argument, console, emit, json_option
from converters.benchmark import (
    BERT_BASE,
    FUSION_MODES,
    HEADERS,
    MAX_BATCH_ACTIVATION,
    BenchModel,
    ModelShape,
    Progress as ProgressFn,
    Row,
    load_average,
    run_benchmark,
    row_cells,
)

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
    """The human rendering of BenchmarkResult.to_dict(): one table per cell, then the targets."""
    env = r["environment"]
    console.print(f"ONNX Runtime {env['onnxruntime']} CPU, {env['cpu']} ({env['cpu_count']} cores); "
                  f"load average {env['loadavg_start']} at start, {env['loadavg_end']} at end")
    for m in r["models"]:
        console.print(f"[bold]{m['name']}[/bold]: d {m['d_model']}, {m['n_heads']} heads, {m['n_layers']} layers, "
                      f"FFN {m['d_ff']} ({m['source']}); dense candidates: {', '.join(m['dense_variants'])}")
        for note in m["notes"]:
            console.print(f"  note: {note}")
    for note in r["notes"]:
        console.print(f"note: {note}")
    for cell in r["cells"]:
        headers = HEADERS if cell["batch"] > 1 else HEADERS[:-2]
        table = Table(title=f"{cell['model']}  seq {cell['seq']}  batch {cell['batch']}  threads {cell['threads']}"
                            f"  ({cell['rounds']} rounds; * = dense reference)", title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in cell["rows"]:
            table.add_row(*row_cells(_row(row), cell["dense_reference"])[:len(headers)])
        console.print(table)
    print_targets(r["targets"])


def print_targets(targets: list[dict[str, Any]]) -> None:
    table = Table(title="targets (issue 3)", title_justify="left")
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
    console.print(table)


def _row(row: dict[str, Any]) -> Row:
    """A Row back from its JSON dict (JSON has no NaN: None back to NaN where Row uses it)."""
    fields: dict[str, Any] = {k: float("nan") if v is None and k in ("speedup", "efficiency") else v
                              for k, v in row.items()}
    return Row(**fields)


def bert_shape(layers: int) -> ModelShape:
    return ModelShape(BERT_BASE.name, BERT_BASE.d_model, BERT_BASE.n_heads, layers, BERT_BASE.d_ff,
                      BERT_BASE.vocab_size)


@click.command("bench")
@checkpoint_argument
@click.option("--seq", "seqs", type=click.IntRange(min=1), multiple=True, default=(128, 512), show_default=True,
              help="Sequence length (repeatable). Longer than the checkpoint's max_length: see below.")
@click.option("--threads", "threads", type=THREADS, multiple=True, default=(1, 2), show_default=True,
              help="ONNX Runtime intra-op threads (repeatable).")
@click.option("--batch", "batch_sizes", type=click.IntRange(min=1), multiple=True, default=(1, 8),
              show_default=True, help="Batch size (repeatable); above 1 every sample gets its own k.")
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
              help="Interleaved rounds per cell (at least).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed runs of every variant before each cell.")
@click.option("--min-time", "min_time_s", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Add rounds until a cell has run this many seconds (at most 10x --repeats).")
@click.option("--bert-base/--no-bert-base", default=True, show_default=True,
              help="Also time a BERT-base-shaped model (d 768, 12 heads, FFN 3072) with random weights.")
@click.option("--bert-layers", type=click.IntRange(min=1, max=64), default=BERT_BASE.n_layers, show_default=True,
              help="Layers of the BERT-base-shaped model (ratios are per layer; 12 is the real depth).")
@click.option("--fusions", type=click.Choice(FUSION_MODES), default="dense", show_default=True,
              help="Which graphs ONNX Runtime's transformers optimizer fuses: the dense candidates only "
                   "(head-skipping graphs as bfexport exports them), all graphs, or none.")
@click.option("--max-batch-activation", type=click.IntRange(min=0), default=MAX_BATCH_ACTIVATION,
              show_default=True, help="Skip batch > 1 cells with more than this many batch*seq*d_model "
                                      "values (0 = no limit).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for random weights, token ids and per-sample caps.")
@json_option
def command(checkpoint: str, seqs: tuple[int, ...], threads: tuple[int, ...], batch_sizes: tuple[int, ...],
            repeats: int, warmup: int, min_time_s: float, bert_base: bool, bert_layers: int, fusions: str,
            max_batch_activation: int, seed: int, as_json: bool) -> None:
    """Time CHECKPOINT's dense, masked, static(k) and adaptive ONNX exports on ONNX Runtime (CPU).

    \b
    For each threads x batch x seq cell every variant is warmed up, then runs are
    interleaved round-robin and medians taken. Batch 1: k = H/4, H/2, 3H/4, H, forced with
    thresholds 1.0 and head caps k. Batch > 1: every sample its own k around each target.
    Prints speedup over the fastest dense graph (plain, transformers-optimizer-fused,
    com.microsoft.Attention, opset-23 Attention), the ideal FLOP-proportional speedup,
    efficiency = speedup / ideal, and adaptive's overhead vs static at the same k.

    \b
    The checkpoint's own weights are timed. If a --seq exceeds its max_length, a copy with
    the same weights and a longer position table is timed (extra positions random).
    Timings need a quiet machine: the load average is recorded. This is a benchmark, not a
    check: the exit code is 0 whatever the targets say. The standard sweep, with files
    written, is benchmarks/head_skipping.py.
    """
    model = load_checkpoint(checkpoint)
    models: list[BenchModel | ModelShape] = [
        BenchModel(Path(checkpoint).resolve().name or "checkpoint", model, f"checkpoint weights ({checkpoint})")]
    if bert_base:
        models.append(bert_shape(bert_layers))
    warn_if_busy(load_average())
    with progress_bar() as report:
        result = run_benchmark(models, seqs=sorted(set(seqs)), threads=sorted(set(threads)),
                               batch_sizes=sorted(set(batch_sizes)), repeats=repeats, warmup=warmup,
                               min_time_s=min_time_s, fusions=fusions, seed=seed,
                               max_batch_activation=max_batch_activation or None, progress=report)
    emit(result.to_dict(), as_json, print_result)
