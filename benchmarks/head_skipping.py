"""The standard head-skipping sweep: every flavor vs the best dense graph on ONNX Runtime CPU.

    python benchmarks/head_skipping.py                 # the full sweep, tens of minutes on 2 cores
    python benchmarks/head_skipping.py --checkpoint examples/debian-sections/checkpoint
    python benchmarks/head_skipping.py --quick         # a minute or two: seq 1 and 128, batch 1 and 8
    python benchmarks/head_skipping.py --threads 1 --clock cpu   # on a busy machine, see --clock

Sweep: the shipped shape (d 128, 8 heads, 4 layers, FFN 512; random weights unless
--checkpoint) and the wide shape (d 512, 16 heads, 6 layers, FFN 2048) at seq 1, 8, 32, 128
and 512, 1 and 2 threads, batch 1, 8 and 32 (batch cells over 2**21 activation values are
skipped), k = H/2 and H at batch 1 and per-sample k around H/2 at batch > 1, beside the
Hugging Face peer (BERT of the same shape, dense and prune_heads to k) when transformers is
installed. Writes benchmarks/results/head_skipping.json and .md (or --out) and prints the
targets, pass/fail. A benchmark, not a test: it exits 0 whatever the targets say. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console

from bfexport.benchmark import (
    BERT_BASE,
    FULL,
    FUSION_MODES,
    SHIPPED,
    WIDE,
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
    parser.add_argument("--bert-base", action="store_true", help="also the BERT-base-shaped model (d 768, 12 heads)")
    parser.add_argument("--bert-layers", type=int, default=BERT_BASE.n_layers,
                        help=f"layers of the BERT-base-shaped model ({BERT_BASE.n_layers}; 12 is the real depth)")
    parser.add_argument("--threads", type=int, action="append", choices=(1, 2),
                        help="intra-op threads (repeatable; default 1 and 2)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: latency (default). cpu: this process's CPU time, which a busy neighbour "
                             "does not inflate; latency only at 1 thread")
    parser.add_argument("--no-hf", dest="peers", action="store_false",
                        help="leave out the Hugging Face peer (it needs the hf extra)")
    parser.add_argument("--fusions", choices=FUSION_MODES, default="dense",
                        help="graphs the transformers optimizer fuses (dense: the dense candidates only)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"directory for head_skipping.json/.md (default {RESULTS}; --quick: none)")
    parser.add_argument("--quick", action="store_true",
                        help="a minute or two: seq 1 and 128, batch 1 and 8, 1 thread, 5 rounds; writes only "
                             "with --out")
    args = parser.parse_args(argv)

    shipped: BenchModel | ModelShape = SHIPPED
    if args.checkpoint:
        shipped = BenchModel(SHIPPED.name, load_checkpoint(args.checkpoint), f"checkpoint weights ({args.checkpoint})")
    models: list[BenchModel | ModelShape] = [shipped, WIDE]
    if args.bert_base:
        models.append(bert_shape(args.bert_layers))
    threads = sorted(set(args.threads or FULL.threads))
    if args.clock == "cpu" and threads != [1]:
        parser.error("--clock cpu measures latency at 1 thread only: add --threads 1")
    if args.quick:
        sweep = dict(seqs=[1, 128], threads=threads[:1], batch_sizes=[1, 8], repeats=5, warmup=1, min_time_s=0.0)
        out = args.out
    else:
        sweep = dict(seqs=FULL.seqs, threads=threads, batch_sizes=FULL.batch_sizes, repeats=args.repeats,
                     warmup=3, min_time_s=args.min_time)
        out = args.out or RESULTS

    warn_if_busy(load_average(), STDERR)
    clock = time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
    with progress_bar(STDERR) as report:
        result = run_benchmark(models, fusions=args.fusions, progress=report, peers=args.peers, clock=clock,
                               **sweep)
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
