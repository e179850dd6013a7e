"""How much accuracy do heads buy on a dataset, and would budgets set by input length buy more?

    python benchmarks/budget_headroom.py examples/debian-sections/checkpoint --data examples/debian-sections

Runs a checkpoint on the validation and test splits at uniform budgets (k heads by the router's
relevance in every layer, every input alike: layer 0's k and the later layers' k from 1, 2, 4, ...,
H) and prints each budget's accuracy and FLOPs ratio: the static trade-off a per-input budget must
beat. Then the one per-input rule whose cost side is known in advance, input length (a head's MACs
grow with L^2): one uniform budget below a length cut, another at or above it, the pair and cut
chosen on validation as the most accurate within each FLOPs ceiling, scored on test beside the
best uniform budget chosen the same way. Writes benchmarks/results/budget_headroom-NAME.json; progress on stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pareto_stats import best_at_cost

from bfexport import cost, data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.model import BudgetFormerConfig
from bfexport.train import predict

RESULTS = Path(__file__).resolve().parent / "results"
Budget = tuple[int, ...]


def budgets(config: BudgetFormerConfig) -> list[Budget]:
    """Layer 0's k by the later layers' k, each a power of two up to H (and H)."""
    ks = sorted({2 ** i for i in range(config.n_heads.bit_length())} | {config.n_heads})
    return [(first,) + (rest,) * (config.n_layers - 1) for first, rest in itertools.product(ks, repeat=2)] \
        if config.n_layers > 1 else [(k,) for k in ks]


class Split:
    """Per input: correct or not at each uniform budget, and what each budget costs it."""

    def __init__(self, model: Any, tokenizer: Any, rows: list[data.Example], grid: list[Budget]) -> None:
        cfg = model.config
        self.correct: dict[Budget, np.ndarray] = {}
        for b in grid:
            p = predict(model, tokenizer, rows, thresholds=[1.0] * cfg.n_layers, caps=list(b))
            self.correct[b], self.lengths = p.correct, p.lengths
        self.macs = {b: np.array([cost.model_macs(cfg, int(n), list(b)) for n in self.lengths], float) for b in grid}
        self.dense = float(sum(cost.model_macs(cfg, int(n)) for n in self.lengths))

    def score(self, short: Budget, long: Budget, cut: int) -> tuple[float, float]:
        """(accuracy, FLOPs ratio) of `short` below `cut` tokens and `long` at or above it."""
        below = self.lengths < cut
        correct = np.where(below, self.correct[short], self.correct[long])
        return float(correct.mean()), float(np.where(below, self.macs[short], self.macs[long]).sum() / self.dense)


def best(candidates: dict[Any, tuple[float, float]], ceiling: float) -> Any | None:
    """The key of the most accurate (accuracy, FLOPs ratio) within `ceiling` (no slack), cheaper on ties."""
    rows = [{"kind": "", "key": c, "accuracy": a, "flops_ratio": f} for c, (a, f) in candidates.items()]
    pick = best_at_cost(rows, {""}, ceiling, slack=0.0)
    return None if pick is None else pick["key"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="directory with validation/test .jsonl.gz")
    parser.add_argument("--ceilings", type=float, nargs="+", default=[0.65, 0.7, 0.75, 0.8, 0.9])
    parser.add_argument("--name", help="results file stem (default: the data directory's name)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model, tokenizer = load_checkpoint(args.checkpoint), data.tokenizer_from_str(load_tokenizer_json(args.checkpoint))
    grid = budgets(model.config)
    splits = {}
    for split in ("validation", "test"):
        print(f"{split}: {len(grid)} uniform budgets", file=sys.stderr, flush=True)
        rows = data.read_examples(args.data / f"{split}.jsonl.gz", require_labels=True)
        splits[split] = Split(model, tokenizer, rows, grid)
    val, test = splits["validation"], splits["test"]
    cuts = sorted({int(c) for c in np.percentile(val.lengths, [10, 25, 50, 75, 90])})
    uniform = {b: val.score(b, b, 0) for b in grid}
    by_length = {(s, lg, c): val.score(s, lg, c) for s in grid for lg in grid for c in cuts if s != lg}
    out: dict[str, Any] = {"checkpoint": str(args.checkpoint), "data": str(args.data), "length_cuts": cuts,
                           "uniform": [{"budget": b, "validation": uniform[b], "test": test.score(b, b, 0)}
                                       for b in grid], "ceilings": []}
    print("| budget per layer | validation accuracy | test accuracy | FLOPs ratio (test) |\n|---|---|---|---|")
    for row in out["uniform"]:
        print(f"| {', '.join(map(str, row['budget']))} | {row['validation'][0]:.4f} | {row['test'][0]:.4f} | "
              f"{row['test'][1]:.3f} |")
    print("\n| FLOPs ceiling | best uniform (test acc @ FLOPs) | best by length (test acc @ FLOPs) |\n|---|---|---|")
    for ceiling in args.ceilings:
        u, lg = best(uniform, ceiling), best(by_length, ceiling)
        if u is None or lg is None:
            continue
        tu, tl = test.score(u, u, 0), test.score(*lg)
        out["ceilings"].append({"ceiling": ceiling, "uniform": u, "uniform_test": tu, "by_length": lg,
                                "by_length_test": tl})
        print(f"| {ceiling:g} | {u}: {tu[0]:.4f} @ {tu[1]:.3f} | {lg[0]} below {lg[2]} tokens, else {lg[1]}: "
              f"{tl[0]:.4f} @ {tl[1]:.3f} |")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"budget_headroom-{args.name or args.data.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
