"""Does the router's per-input k carry information? Its budgets against the same budgets dealt out at random.

Runs the test texts at the given thresholds (default: the checkpoint's), then, per shuffle, forces
each input to run the k of a random other input in each layer (every layer permuted on its own,
thresholds 1 and per-input caps, heads still the input's top-k by relevance): the same k histogram
per layer and about the same FLOPs. If the router's assignment is no more accurate than the
shuffled ones, the per-input variation is noise around a static budget.

    python benchmarks/shuffled_budgets.py /tmp/model --thresholds 0.2,0.2,0.2,0.2 --shuffles 5
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import tokenizers
import torch

from bfexport import cost, data, summary
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.names import HEAD_COUNTS, LOGITS


def run(model: BudgetFormerForSequenceClassification, tokenizer: tokenizers.Tokenizer, texts: list[str],
        thresholds: list[float], caps: np.ndarray | None = None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Logits, head counts and lengths over `texts` in order; caps (N, L) per input, or none."""
    start = 0

    def runner(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal start
        rows = slice(start, start + len(ids))
        start += len(ids)
        forward = {"thresholds": thresholds} if caps is None else \
            {"thresholds": [1.0] * model.config.n_layers, "caps": torch.from_numpy(caps[rows])}
        out = model.predict(torch.from_numpy(ids), torch.from_numpy(mask), **forward)
        return {LOGITS: out.logits.numpy(), HEAD_COUNTS: out.head_counts.numpy(),
                "selected_heads": out.selected_heads(model.config.n_heads).numpy()}
    return summary.run_data(runner, tokenizer, model.config, texts, batch_size)


def against_shuffled(model: BudgetFormerForSequenceClassification, tokenizer: tokenizers.Tokenizer, texts: list[str],
                     y: np.ndarray, thresholds: list[float], shuffles: int) -> dict[str, Any]:
    """The router's accuracy, FLOPs and adaptivity at `thresholds`, then per shuffle (seeds 0..shuffles-1)
    the same per-layer k dealt out at random: accuracy and FLOPs, and their mean and std."""
    cfg = model.config
    routed = run(model, tokenizer, texts, thresholds)
    counts = routed[HEAD_COUNTS]
    result: dict[str, Any] = {
        "thresholds": thresholds, "accuracy": float((routed[LOGITS].argmax(-1) == y).mean()),
        "flops_ratio": cost.flops_ratio(cfg, routed["lengths"], counts),
        "adaptivity_per_layer": summary.adaptivity(counts, cfg.n_heads)}
    dealt: list[dict[str, float]] = []
    for seed in range(shuffles):
        rng = np.random.default_rng(seed)
        caps = np.stack([rng.permutation(counts[:, layer]) for layer in range(cfg.n_layers)], 1)
        shuffled = run(model, tokenizer, texts, thresholds, caps)
        assert (shuffled[HEAD_COUNTS] == caps).all()  # every input ran exactly its dealt k
        dealt.append({"accuracy": float((shuffled[LOGITS].argmax(-1) == y).mean()),
                      "flops_ratio": cost.flops_ratio(cfg, shuffled["lengths"], caps)})
    accuracies = [s["accuracy"] for s in dealt]
    result.update(shuffled=dealt, shuffled_mean_accuracy=float(np.mean(accuracies)),
                  shuffled_std_accuracy=float(np.std(accuracies)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="examples/debian-sections/test.jsonl.gz")
    parser.add_argument("--thresholds", default=None, help="Per layer, comma-separated (default: the checkpoint's).")
    parser.add_argument("--shuffles", type=int, default=5)
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).eval()
    cfg = model.config
    tokenizer = data.tokenizer_from_str(load_tokenizer_json(args.checkpoint), f"{args.checkpoint}/tokenizer.json")
    examples = data.read_examples(args.data, require_labels=True)
    y, texts = data.label_ids(examples, cfg.labels), [e.text for e in examples]
    thresholds = cfg.budget_thresholds if args.thresholds is None else [float(t) for t in args.thresholds.split(",")]
    result = against_shuffled(model, tokenizer, texts, y, thresholds, args.shuffles)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
