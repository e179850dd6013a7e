"""Does a router that reads more than the masked mean place budgets better? An experiment, PyTorch only.

    python benchmarks/router_summary.py --summary mean --seed 0
    python benchmarks/router_summary.py --summary mean-max --seed 0 --out /tmp/router-summary.jsonl

Trains a BudgetFormer with `bfexport train` (the pareto recipe's sizes on examples/man-sections,
3 epochs) whose router reads the masked mean of its layer's input (bfexport's router) or
[masked mean; masked max] (`mean-max`: the router's projection takes 2 d inputs; set for this
process only, by replacing Router's __init__ and forward before anything is built, so the
exporters never see it and no file it writes is loadable elsewhere). Then on the test texts at
the checkpoint's thresholds: accuracy, FLOPs ratio, per-layer adaptivity, and the router's k
against the same k per layer dealt out at random (shuffled_budgets.py's control, --shuffles
times). Prints one JSON line (and appends it to --out). A benchmark: it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from shuffled_budgets import against_shuffled
from torch import nn

import bfexport.model as model_module
from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json

DATA = Path(__file__).resolve().parents[1] / "examples/man-sections"
RECIPE = ["--epochs", "3", "--max-length", "128", "--d-model", "64", "--n-heads", "8", "--n-layers", "2",
          "--d-ff", "256", "--vocab-size", "4000"]


def read_mean_and_max() -> None:
    """Router reads [masked mean; masked max] of its layer's input, in this process."""
    def init(self: model_module.Router, config: model_module.BudgetFormerConfig) -> None:
        nn.Module.__init__(self)
        self.n_heads = config.n_heads
        self.proj = nn.Linear(2 * config.d_model, 2 * config.n_heads)

    def forward(self: model_module.Router, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        peak = x.masked_fill(mask.unsqueeze(-1) == 0, -1e4).amax(1)  # (B, d)
        budget, relevance = self.proj(torch.cat([model_module.masked_mean(x, mask), peak], -1)).split(self.n_heads, -1)
        return budget, relevance

    model_module.Router.__init__ = init  # type: ignore[method-assign]
    model_module.Router.forward = forward  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", choices=("mean", "mean-max"), default="mean")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--out", type=Path, help="append the result line to this file")
    args = parser.parse_args()
    if args.summary == "mean-max":
        read_mean_and_max()
    from click.testing import CliRunner

    from bfexport.cli import cli

    with tempfile.TemporaryDirectory(prefix="router-summary-") as tmp:
        began = time.perf_counter()
        result = CliRunner().invoke(cli, ["train", "--train", str(DATA / "train.jsonl.gz"), "--validation",
                                          str(DATA / "validation.jsonl.gz"), "-o", tmp, "--force", "--seed",
                                          str(args.seed), *RECIPE], catch_exceptions=False)
        if result.exit_code != 0:
            print(result.output, file=sys.stderr)
            return result.exit_code
        seconds = time.perf_counter() - began
        model = load_checkpoint(tmp).eval()
        tokenizer = data.tokenizer_from_str(load_tokenizer_json(tmp), f"{tmp}/tokenizer.json")
    cfg = model.config
    examples = data.read_examples(DATA / "test.jsonl.gz", require_labels=True)
    y, texts = data.label_ids(examples, cfg.labels), [e.text for e in examples]
    found = against_shuffled(model, tokenizer, texts, y, cfg.budget_thresholds, args.shuffles)
    accuracy, shuffled = found["accuracy"], [s["accuracy"] for s in found["shuffled"]]
    line = {"summary": args.summary, "seed": args.seed, "train_s": round(seconds, 1), "accuracy": accuracy,
            "flops_ratio": found["flops_ratio"], "adaptivity": found["adaptivity_per_layer"],
            "shuffled_mean": found["shuffled_mean_accuracy"], "shuffled_std": found["shuffled_std_accuracy"],
            "shuffled_at_least_as_accurate": sum(a >= accuracy for a in shuffled)}
    print(json.dumps(line))
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
