"""bfexport bench: ONNX Runtime CPU latency of a model (quick) or of every flavor (--full) vs dense, side by side."""

from __future__ import annotations

import json

import click

from bfexport.benchmark import (
    BERT_BASE,
    FULL,
    FUSION_MODES,
    MAX_BATCH_ACTIVATION,
    WIDE,
    BenchModel,
    ModelShape,
    bert_shape,
    load_average,
    load_target,
    print_result,
    progress_bar,
    quick_sweep,
    run_benchmark,
    warn_if_busy,
)
from bfexport.cli.args import console, detail, emit, json_option, report_console, threads_option
from bfexport.errors import BfexportError


@click.command("bench")
@click.argument("target", type=click.Path(exists=True))
@click.option("--full", is_flag=True, help="The full sweep: every flavor at forced k, a wide model, the Hugging Face "
                                          "peer, seq 1 to 512, 1 and 2 threads, batch 1, 8 and 32 (tens of minutes).")
@click.option("--seq", "seqs", type=click.IntRange(min=1), multiple=True,
              help="Sequence length (repeatable) [default: the model's max_length; --full: 1, 8, 32, 128, 512].")
@threads_option("ONNX Runtime intra-op threads (repeatable) [default: 1; --full: 1, 2].", multiple=True)
@click.option("--batch", "batch_sizes", type=click.IntRange(min=1), multiple=True,
              help="Batch size (repeatable) [default: 1; --full: 1, 8, 32]; with --full above 1 every sample gets "
                   "its own k.")
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
              help="Interleaved rounds per cell (at least).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed runs of every variant before each cell.")
@click.option("--min-time", "min_time_s", type=click.FloatRange(min=0), default=None,
              help="Add rounds until a cell has run this many seconds (at most 10x --repeats) [default: 1; --full: 2].")
@click.option("--wide/--no-wide", default=True, show_default=True,
              help=f"With --full: also time the wide shape (d {WIDE.d_model}, {WIDE.n_heads} heads, {WIDE.n_layers} "
                   f"layers, FFN {WIDE.d_ff}) with random weights.")
@click.option("--hf/--no-hf", "peers", default=True, show_default=True,
              help="With --full: also time a Hugging Face BertForSequenceClassification of each shape, dense and "
                   "pruned with prune_heads (needs the hf extra; skipped with a note without it).")
@click.option("--bert-base/--no-bert-base", default=False, show_default=True,
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
            repeats: int, warmup: int, min_time_s: float | None, wide: bool, peers: bool, bert_base: bool,
            bert_layers: int, fusions: str, max_batch_activation: int, seed: int, as_json: bool) -> None:
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
    masked, static(k), adaptive and the Hugging Face peer (BERT of the same shape, dense and
    prune_heads to k) are warmed up, then run interleaved round-robin. Batch 1: k = H/2
    and H, forced with thresholds 1.0 and head caps k. Batch > 1: every sample its own k
    around H/2, beside static at H/2. A --seq beyond the model's max_length
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
    if full and wide:
        models.append(WIDE)
    if full and bert_base:
        models.append(bert_shape(bert_layers))
    warn_if_busy(load_average(), console)
    with progress_bar(console) as report:
        result = run_benchmark(models, seqs=sorted(set(seqs or sweep.seqs)),
                               threads=sorted(set(threads or sweep.threads)),
                               batch_sizes=sorted(set(batch_sizes or sweep.batch_sizes)), repeats=repeats,
                               warmup=warmup, min_time_s=sweep.min_time_s if min_time_s is None else min_time_s,
                               fusions=fusions if full else "none", seed=seed,
                               max_batch_activation=max_batch_activation or None, full=full, peers=peers,
                               progress=report)
    env = result.environment
    detail(f"{env['platform']}, Python {env['python']}, onnx {env['onnx']}, torch {env['torch']}, "
           f"numpy {env['numpy']}; "
           f"settings {json.dumps(result.settings, sort_keys=True)}")
    emit(result.to_dict(), as_json, lambda r: print_result(r, report_console))
