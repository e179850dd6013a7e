"""The adaptive graph as an older revision exports it, beside today's, timed side by side in one run.

    python benchmarks/adaptive_revisions.py a2cb835 --clock cpu          # every cell below, 1 thread
    python benchmarks/adaptive_revisions.py a2cb835 --shape shipped --seq 1 --seq 128 --batch 1

A before/after check for changes to converters/onnx/adaptive.py and router.py: the revision's
tree (git archive) exports the adaptive graph of the benchmark's random-weight shapes (shipped,
wide) in a subprocess with that tree on the path, today's tree exports the same weights, and both
are timed interleaved (bfexport.timing) beside static at k = H/2 and the plain dense export, with
k forced to H/2 (and H) at batch 1 and per-sample caps of mean H/2 at batch > 1 (as head_skipping.py).
Both graphs' logits and head counts are checked to agree first. Prints one line per cell with
the medians and old/new - 1; --out writes the rows as JSON. A benchmark: it asserts nothing about
time and exits 0 whatever it measures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from cell_options import add_cell_options, chosen_cells, clock_of

from bfexport.benchmark import SHIPPED, WIDE, budgets, per_sample_caps, random_model
from bfexport.benchmark.graphs import budget_feeds, cpu_session, token_feeds
from bfexport.files import write_json
from bfexport.flavors import AdaptiveExport, DenseExport, StaticExport
from bfexport.machine import load_average
from bfexport.model import BudgetFormerConfig
from bfexport.names import HEAD_COUNTS, LOGITS
from bfexport.timing import Clock, summarize, time_slots
from converters import export

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {shape.name: shape for shape in (SHIPPED, WIDE)}
MAX_LENGTH = 512
CELLS = [(1, seq) for seq in (1, 8, 32, 128, 512)] + [(8, seq) for seq in (1, 8, 128, 512)]  # (batch, seq)
EXPORT_AT_REVISION = """
import sys
from bfexport.benchmark import {shape}, random_model
from converters import AdaptiveExport, export
proto = export(random_model({shape}, {max_length}).model, AdaptiveExport(opset=23))
open(sys.argv[1], "wb").write(proto.SerializeToString())
"""


def export_at(revision: str, shape: str, work: Path) -> bytes:
    """The adaptive graph (opset 23) of the shape's random model, as `revision`'s tree exports it."""
    tree = work / "tree"
    if not tree.exists():
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    out = work / f"{shape}.onnx"
    code = EXPORT_AT_REVISION.format(shape=shape.upper(), max_length=MAX_LENGTH)
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, cwd=tree,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    return out.read_bytes()


def time_cell(sessions: dict[str, Any], cfg: BudgetFormerConfig, batch: int, seq: int, *, repeats: int,
              min_time_s: float, clock: Clock) -> dict[str, Any]:
    """One cell, every variant interleaved: before and after at k = H/2 (batch 1) or per-sample caps
    of mean H/2 (batch > 1), at batch 1 also at k = H, beside static (k = H/2) and dense."""
    H, L = cfg.n_heads, cfg.n_layers
    half = budgets(H, (0.5,))[0]
    base = token_feeds(cfg, batch, seq, seed=seq)
    caps = np.full((1, L), half) if batch == 1 else per_sample_caps(np.random.default_rng(seq), batch, L, H, half)
    budgeted = {"": budget_feeds(cfg, base, caps)}
    if batch == 1:
        budgeted["@H"] = budget_feeds(cfg, base, np.full((1, L), H))
    slots: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}
    for suffix, feeds in budgeted.items():
        before, after = (sessions[v].run([LOGITS, HEAD_COUNTS], feeds) for v in ("before", "after"))
        np.testing.assert_allclose(before[0], after[0], atol=1e-4, rtol=0)
        if not (before[1] == after[1]).all():
            raise SystemExit(f"batch {batch} seq {seq}: the two revisions chose different head counts")
        slots.update({f"before{suffix}": (sessions["before"], feeds), f"after{suffix}": (sessions["after"], feeds)})
    slots.update({"static": (sessions["static"], base), "dense": (sessions["dense"], base)})
    runs = [lambda s=session, f=feeds: s.run(None, f) for session, feeds in slots.values()]
    seconds = time_slots(runs, repeats=repeats, warmup=3, min_time_s=min_time_s, clock=clock)
    ms = {label: summarize(s)["median_ms"] for label, s in zip(slots, seconds, strict=True)}
    return {"batch": batch, "seq": seq, "mean_k": float(caps.mean()), "median_ms": ms,
            "after_vs_before": ms["after"] / ms["before"] - 1, "before_vs_static": ms["before"] / ms["static"] - 1,
            "after_vs_static": ms["after"] / ms["static"] - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision whose adaptive graph is the 'before'")
    add_cell_options(parser, SHAPES)
    parser.add_argument("--out", type=Path, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    clock, cells = clock_of(args), chosen_cells(args, CELLS)
    rows = []
    print(f"load average {load_average()}; 1 thread; clock {args.clock}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shape or sorted(SHAPES, reverse=True):
            model = random_model(SHAPES[name], MAX_LENGTH).model
            cfg = model.config
            half = budgets(cfg.n_heads, (0.5,))[0]
            static = StaticExport(opset=23, heads=[list(range(half))] * cfg.n_layers)
            graphs = {"before": export_at(args.revision, name, Path(tmp)),
                      "after": export(model, AdaptiveExport(opset=23)).SerializeToString(),
                      "static": export(model, static).SerializeToString(),
                      "dense": export(model, DenseExport()).SerializeToString()}
            sessions = {variant: cpu_session(payload, 1) for variant, payload in graphs.items()}
            for batch, seq in cells:
                row = time_cell(sessions, cfg, batch, seq, repeats=args.repeats, min_time_s=args.min_time,
                                clock=clock)
                rows.append({"shape": name, **row})
                ms = row["median_ms"]
                full = (f"  | k = H: before {ms['before@H'] / ms['dense'] - 1:+.1%}, after "
                        f"{ms['after@H'] / ms['dense'] - 1:+.1%} vs dense" if batch == 1 else "")
                print(f"{name:8s} batch {batch:2d} seq {seq:3d}: " + "  ".join(f"{v} {t:.3f}" for v, t in ms.items())
                      + f" ms  | after/before {row['after_vs_before']:+.1%}  vs static: before "
                        f"{row['before_vs_static']:+.1%}, after {row['after_vs_static']:+.1%}" + full, flush=True)
    print(f"load average {load_average()} at the end", file=sys.stderr)
    if args.out:
        write_json(args.out, {"revision": args.revision, "clock": args.clock, "threads": 1,
                              "command": " ".join(["python", "benchmarks/adaptive_revisions.py",
                                                   *(argv or sys.argv[1:])]), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
