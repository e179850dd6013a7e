"""One adaptive point of the Pareto benchmark across seeds: is it above static pruning on average?

    python benchmarks/pareto_seeds.py benchmarks/results/seeds/pareto-ms-tuned-s*.json

Each file is one complete `pareto.py` run (one seed). For the named adaptive point, per seed: its
accuracy minus the best static baseline's at no more FLOPs (chosen on the test set, which favours
static) and minus the dense twin's (before and, where the run has it, after the fine-tune epochs),
each with its exact McNemar p on that seed's test texts; then,
over the seeds, the mean difference and the exact sign-flip p-value (is the mean different from
zero, with the seeds as the unit). Prints a markdown table (stdout); --json also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pareto_stats import RIVALS, seed_summary

POINT = "budgetformer cal 0.7 (thresholds) + fine-tune"


def per_seed(paths: list[Path], point: str) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        result = json.loads(path.read_text())
        if not result["complete"]:
            sys.exit(f"error: {path} is from a run that did not finish")
        comp = next((c for c in result["comparisons"] if c["adaptive"] == point), None)
        if comp is None:
            sys.exit(f"error: {path} has no adaptive point {point!r}")
        rows = {r["name"]: r for r in result["rows"]}
        out.append({"file": path.name, "seed": int(result["args"]["seed"]), **comp,
                    "adaptive_layers": rows[point].get("adaptive_layers")})
    return sorted(out, key=lambda s: s["seed"])


def table(point: str, seeds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [f"`{point}`, {summary['seeds']} seeds", "",
             "| seed | FLOPs | accuracy | layers where k varies | vs dense (p) | best static at <= FLOPs | its FLOPs "
             "| its accuracy | adaptive - static (p) |", "|---|---|---|---|---|---|---|---|---|"]
    for s in seeds:
        lines.append(f"| {s['seed']} | {s['flops_ratio']:.3f} | {s['accuracy']:.4f} | {s['adaptive_layers']} | "
                     f"{100 * s['vs_dense']:+.1f} ({s['p_vs_dense']:.2g}) | {s['best_static']} | "
                     f"{s['best_static_flops_ratio']:.3f} | {s['best_static_accuracy']:.4f} | "
                     f"{100 * s['vs_static']:+.1f} ({s['p_vs_static']:.2g}) |")
    for key, rival in ((k, r) for k, r in RIVALS.items() if k in summary):
        v = summary[key]
        lines.append(f"\nAgainst {rival}: mean {100 * v['mean']:+.2f} points, above in {v['above']} seeds, below in "
                     f"{v['below']}; exact sign-flip p = {v['sign_flip_p']:.3g}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+", help="pareto-*.json files, one complete run per seed")
    parser.add_argument("--point", default=POINT, help="the adaptive row to compare (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the per-seed figures and the summary here")
    args = parser.parse_args(argv)
    seeds = per_seed(args.files, args.point)
    if len({s["seed"] for s in seeds}) != len(seeds):
        sys.exit("error: two files are from the same seed")
    summary = seed_summary(seeds)
    print(table(args.point, seeds, summary), end="")
    if args.json is not None:
        args.json.write_text(json.dumps({"point": args.point, "summary": summary, "per_seed": seeds}, indent=1) + "\n")


if __name__ == "__main__":
    main()
