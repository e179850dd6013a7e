"""The options the adaptive-graph timing scripts share (adaptive_revisions.py, adaptive_overhead.py):
which shapes and cells to time, how long, and by which clock."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

from bfexport.timing import Clock


def add_cell_options(parser: argparse.ArgumentParser, shapes: Iterable[str]) -> None:
    parser.add_argument("--shape", action="append", choices=sorted(shapes), help="repeatable (default: all)")
    parser.add_argument("--seq", type=int, action="append", help="only these sequence lengths (repeatable)")
    parser.add_argument("--batch", type=int, action="append", help="only these batch sizes (repeatable)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per cell, at least (15)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per cell, at least (1)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (a busy neighbour does not inflate it)")


def chosen_cells(args: argparse.Namespace, cells: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (batch, seq) cells that --batch and --seq leave (all without them)."""
    return [(b, s) for b, s in cells if (not args.seq or s in args.seq) and (not args.batch or b in args.batch)]


def clock_of(args: argparse.Namespace) -> Clock:
    return time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
