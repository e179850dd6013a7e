"""The standard head-skipping sweep: every flavor vs the best dense graph on ONNX Runtime CPU.

    python benchmarks/head_skipping.py                 # the full sweep, ~6-8 minutes on 2 quiet cores
    python benchmarks/head_skipping.py --checkpoint examples/debian-sections/checkpoint
    python benchmarks/head_skipping.py --quick         # smoke run: tiny sweep, nothing written

Sweep: the shipped shape (d 128, 8 heads, 4 layers, FFN 512; random weights unless
--checkpoint) and a BERT-base-shaped model (d 768, 12 heads, FFN 3072, 4 layers) at seq
128 and 512, 1 and 2 threads, batch 1 and 8 (BERT-base batch 8 at seq 128 only).
Writes benchmarks/results/head_skipping.json and .md and prints the targets, pass/fail.
A benchmark, not a test: it exits 0 whatever the targets say. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console

from bfexport.benchmark import (
    BERT_BASE,
    FULL,
    FUSION_MODES,
    SHIPPED,
    BenchModel,
    ModelShape,
    bert_shape,
    check_targets,
    load_average,
    print_result,
    progress_bar,
    run_benchmark,
    to_markdown,
    warn_if_busy,
)
from bfexport.checkpoint import load_checkpoint
from bfexport.files import atomic_file, write_json

RESULTS = Path(__file__).resolve().parent / "results"
STDERR = Console(stderr=True, soft_wrap=True)  # progress and warnings
REPORT = Console(width=None if sys.stdout.isatty() else 160)  # the tables; wide when redirected, so none is cut


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="time this checkpoint's weights as the shipped model "
                                             "(default: random weights of the shipped shape)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per cell, at least (15)")
    parser.add_argument("--min-time", type=float, default=FULL.min_time_s,
                        help=f"seconds per cell, at least ({FULL.min_time_s:g})")
    parser.add_argument("--bert-layers", type=int, default=BERT_BASE.n_layers,
                        help=f"layers of the BERT-base-shaped model ({BERT_BASE.n_layers}; 12 is the real depth)")
    parser.add_argument("--fusions", choices=FUSION_MODES, default="dense",
                        help="graphs the transformers optimizer fuses (dense: the dense candidates only)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"directory for head_skipping.json/.md (default {RESULTS}; --quick: none)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: seq 64, 1 thread, 2 rounds, a 1-layer BERT-base shape; writes only with --out")
    args = parser.parse_args(argv)

    shipped: BenchModel | ModelShape = SHIPPED
    if args.checkpoint:
        shipped = BenchModel(SHIPPED.name, load_checkpoint(args.checkpoint), f"checkpoint weights ({args.checkpoint})")
    if args.quick:
        models = [shipped, bert_shape(1)]
        sweep = dict(seqs=[64], threads=[1], batch_sizes=[1, 8], repeats=2, warmup=1, min_time_s=0.0)
        out = args.out
    else:
        models = [shipped, bert_shape(args.bert_layers)]
        sweep = dict(seqs=FULL.seqs, threads=FULL.threads, batch_sizes=FULL.batch_sizes, repeats=args.repeats,
                     warmup=3, min_time_s=args.min_time)
        out = args.out or RESULTS

    warn_if_busy(load_average(), STDERR)
    with progress_bar(STDERR) as report:
        result = run_benchmark(models, fusions=args.fusions, progress=report, **sweep)
    result.settings["command"] = shlex.join(["python", "benchmarks/head_skipping.py", *(argv or sys.argv[1:])])
    result.settings["quick"] = args.quick
    data = result.to_dict()
    print_result(data, REPORT)

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "head_skipping.json", data)
        with atomic_file(out / "head_skipping.md") as tmp:
            tmp.write_text(f"Command: `{result.settings['command']}`\n\n" + to_markdown(result, check_targets(result)))
        print(f"wrote {out / 'head_skipping.json'} and {out / 'head_skipping.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
