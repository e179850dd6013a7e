"""Where the adaptive graph's time over static pruning goes, per shape, measured side by side.

    python benchmarks/adaptive_overhead.py                    # shipped and wide shapes, 1 thread
    python benchmarks/adaptive_overhead.py --threads 2 --out benchmarks/results/adaptive_overhead-2threads.json

For each cell (batch 1 with k = H/2 in every layer; batch 8 with per-sample caps of mean H/2) it
times, interleaved in one loop (bfexport.timing), on the benchmark's random-weight shapes:
the dense candidates of the head-skipping sweep (the fastest is the cell's dense reference),
static pruning to heads 0..H/2-1, the router floor (that static graph plus the router,
bfexport/benchmark/decomposition.py), the adaptive graph with the path its Ifs pick for the cell
written without them ("one path"), and the adaptive graph. The parts of adaptive / static:

  router  floor / static - 1      the router's ops, with nothing else changed
  path    one path / floor - 1    the chosen path against static attention: gathers, weight
                                  copies, runtime shapes (at batch 8 also the per-sample k)
  choice  adaptive / one path - 1 the Ifs that pick the path per call

and floor / dense reference: the most any in-graph router could reach in that cell if choosing
and running its path cost nothing beyond static attention. Logits and head counts are checked
first (floor = static's logits and the adaptive graph's heads; one path = the adaptive graph).
A benchmark: it asserts nothing about time and exits 0 whatever it measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from cell_options import add_cell_options, chosen_cells, clock_of

from bfexport.benchmark import SHIPPED, WIDE, budgets, per_sample_caps, random_model
from bfexport.benchmark.decomposition import one_path_export, router_floor_export, rule_path
from bfexport.benchmark.graphs import budget_feeds, cpu_session, prepare_graphs, token_feeds
from bfexport.files import atomic_file, write_json
from bfexport.flavors import DenseExport
from bfexport.machine import load_average
from bfexport.model import BudgetFormerConfig
from bfexport.names import HEAD_COUNTS, LOGITS
from bfexport.timing import Clock, summarize, time_slots

SHAPES = {shape.name: shape for shape in (SHIPPED, WIDE)}
MAX_LENGTH = 512
CELLS = [(1, seq) for seq in (1, 8, 32, 128, 512)] + [(8, 1), (8, 8), (8, 128)]  # (batch, seq)


def time_cell(sessions: dict[str, Any], dense: list[str], cfg: BudgetFormerConfig, batch: int, seq: int, *,
              repeats: int, min_time_s: float, clock: Clock) -> dict[str, Any]:
    """One cell, checked, then every graph interleaved; medians and the parts of adaptive / static."""
    H, L = cfg.n_heads, cfg.n_layers
    half = budgets(H, (0.5,))[0]
    base = token_feeds(cfg, batch, seq, seed=seq)
    caps = np.full((1, L), half) if batch == 1 else per_sample_caps(np.random.default_rng(seq), batch, L, H, half)
    routed = budget_feeds(cfg, base, caps)
    paths = {rule_path(batch, seq, int(caps[:, i].max()), int(caps[:, i].sum()), H) for i in range(L)}
    if len(paths) != 1:
        raise SystemExit(f"batch {batch} seq {seq}: the layers take different paths ({sorted(paths)})")
    path = paths.pop()
    static, floor, adaptive = (sessions[v].run([LOGITS, HEAD_COUNTS] if v != "static" else [LOGITS], f)
                               for v, f in (("static", base), ("floor", routed), ("adaptive", routed)))
    one = sessions[path].run([LOGITS, HEAD_COUNTS], routed)
    np.testing.assert_allclose(floor[0], static[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(one[0], adaptive[0], atol=1e-4, rtol=0)
    if not (floor[1] == adaptive[1]).all() or not (one[1] == adaptive[1]).all():
        raise SystemExit(f"batch {batch} seq {seq}: the graphs chose different head counts")
    slots = {v: (sessions[v], base) for v in dense}
    slots.update({"static": (sessions["static"], base), "floor": (sessions["floor"], routed),
                  "one path": (sessions[path], routed), "adaptive": (sessions["adaptive"], routed)})
    runs = [lambda s=session, f=feeds: s.run(None, f) for session, feeds in slots.values()]
    seconds = time_slots(runs, repeats=repeats, warmup=3, min_time_s=min_time_s, clock=clock)
    ms = {label: summarize(s)["median_ms"] for label, s in zip(slots, seconds, strict=True)}
    reference = min(dense, key=lambda v: ms[v])
    return {"batch": batch, "seq": seq, "mean_k": float(caps.mean()), "path": path, "dense_reference": reference,
            "median_ms": ms,
            "parts": {"router": ms["floor"] / ms["static"] - 1, "path": ms["one path"] / ms["floor"] - 1,
                      "choice": ms["adaptive"] / ms["one path"] - 1},
            "speedup": {v: ms[reference] / ms[v] for v in ("static", "floor", "one path", "adaptive")}}


def markdown(rows: list[dict[str, Any]], command: str, threads: int, clock: str) -> str:
    lines = [f"Command: `{command}`", "",
             f"# Adaptive overhead over static pruning, by part ({threads} thread{'s' * (threads > 1)}, "
             f"{clock} clock)", "",
             "k = H/2 (batch 8: per-sample caps, mean H/2). Medians in ms; speedups over the cell's fastest "
             "dense graph.",
             "", "| shape | batch | seq | path | dense ref | static | floor | one path | adaptive | router | path "
             "| choice | speedup: static | floor | adaptive |", "|" + " --- |" * 15]
    for r in rows:
        ms, parts, up = r["median_ms"], r["parts"], r["speedup"]
        lines.append(f"| {r['shape']} | {r['batch']} | {r['seq']} | {r['path']} | {ms[r['dense_reference']]:.3f} "
                     f"({r['dense_reference']}) | {ms['static']:.3f} | {ms['floor']:.3f} | {ms['one path']:.3f} | "
                     f"{ms['adaptive']:.3f} | {parts['router']:+.1%} | {parts['path']:+.1%} | {parts['choice']:+.1%} | "
                     f"{up['static']:.3f} | {up['floor']:.3f} | {up['adaptive']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    add_cell_options(parser, SHAPES)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (1)")
    parser.add_argument("--out", type=Path, help="write the rows to this JSON file, and a table beside it (.md)")
    args = parser.parse_args(argv)
    clock, cells = clock_of(args), chosen_cells(args, CELLS)
    command = " ".join(["python", "benchmarks/adaptive_overhead.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"load average {load_average()}; {args.threads} thread(s); clock {args.clock}", file=sys.stderr)
    rows = []
    for name in args.shape or sorted(SHAPES, reverse=True):
        bench = random_model(SHAPES[name], MAX_LENGTH)
        model, cfg = bench.model, bench.model.config
        half = budgets(cfg.n_heads, (0.5,))[0]
        graphs, _ = prepare_graphs(bench, [half], peers=False)
        payloads = {g.variant: g.payload for g in graphs
                    if g.variant in ("static", "adaptive") or g.kind is DenseExport}
        payloads["floor"] = router_floor_export(model, half).SerializeToString()
        for path in {rule_path(b, s, half, b * half, cfg.n_heads) for b, s in cells}:
            payloads[path] = one_path_export(model, path).SerializeToString()
        sessions = {variant: cpu_session(payload, args.threads) for variant, payload in payloads.items()}
        dense = [g.variant for g in graphs if g.kind is DenseExport]
        for batch, seq in cells:
            row = {"shape": name, **time_cell(sessions, dense, cfg, batch, seq, repeats=args.repeats,
                                              min_time_s=args.min_time, clock=clock)}
            rows.append(row)
            ms, parts, up = row["median_ms"], row["parts"], row["speedup"]
            print(f"{name:8s} batch {batch} seq {seq:3d} ({row['path']}): dense {ms[row['dense_reference']]:.3f} "
                  f"static {ms['static']:.3f} floor {ms['floor']:.3f} one path {ms['one path']:.3f} adaptive "
                  f"{ms['adaptive']:.3f} ms | router {parts['router']:+.1%} path {parts['path']:+.1%} choice "
                  f"{parts['choice']:+.1%} | speedup static {up['static']:.3f} floor {up['floor']:.3f} adaptive "
                  f"{up['adaptive']:.3f}", flush=True)
    print(f"load average {load_average()} at the end", file=sys.stderr)
    if args.out:
        write_json(args.out, {"command": command, "threads": args.threads, "clock": args.clock, "rows": rows})
        with atomic_file(args.out.with_suffix(".md")) as tmp:
            tmp.write_text(markdown(rows, command, args.threads, args.clock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
