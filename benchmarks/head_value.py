"""Is there anything per input to adapt? The loss change of one head more or fewer, per input.

For each layer of a checkpoint, runs the test texts at the model's own budgets (the inference
rule: k from the thresholds, the top-k heads by relevance), then again with that layer alone
running k + 1 (or k - 1) heads, every other layer replaying the first pass's heads: the same
probe the paired budget signal uses in training, without dropout. Reports, per layer and
direction, the mean and std over inputs of the cross-entropy change and the share of inputs
where it falls or rises by more than --margin nats. A budget can only vary usefully per input
if that change does.

    python benchmarks/head_value.py examples/debian-sections/checkpoint \
        --data examples/debian-sections/test.jsonl.gz
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.train import ExploreExploit, Probe, TrainConfig, length_batches, tensors, token_lengths


@torch.no_grad()
def loss_changes(model: BudgetFormerForSequenceClassification, tokenizer: object,
                 examples: list[data.Example], batch_size: int = 64) -> dict[tuple[int, int], np.ndarray]:
    """(layer, delta) -> per input, CE with that layer at k + delta minus CE at k (NaN where k + delta
    leaves [1, H]). Inputs in the order given."""
    model.eval()
    cfg = model.config
    gate = ExploreExploit(cfg, TrainConfig(explore_frac=0.0), total_steps=1)  # exploiting: the inference rule
    out = {(layer, d): np.full(len(examples), np.nan) for layer in range(cfg.n_layers) for d in (-1, 1)}
    index = {id(e): i for i, e in enumerate(examples)}
    for batch in length_batches(examples, token_lengths(tokenizer, examples), batch_size):
        rows = [index[id(e)] for e in batch]
        ids, mask, y = tensors(tokenizer, batch, cfg.labels, cfg.max_length, torch.device("cpu"))
        base = F.cross_entropy(model(ids, mask, gate_fn=gate).logits, y, reduction="none")
        counts = gate.chosen_counts()  # (B, L)
        for layer, delta in out:
            k = counts[:, layer] + delta
            valid = (k >= 1) & (k <= cfg.n_heads)
            with gate.probing(Probe(torch.full_like(k, layer), torch.where(valid, delta, 0))):
                changed = F.cross_entropy(model(ids, mask, gate_fn=gate).logits, y, reduction="none")
            out[layer, delta][rows] = torch.where(valid, changed - base, torch.nan).numpy()
    return out


def summarise(changes: dict[tuple[int, int], np.ndarray], margin: float) -> list[dict[str, object]]:
    """Per (layer, delta) with any valid input: mean, std and the shares beyond +-margin."""
    rows: list[dict[str, object]] = []
    for (layer, delta), diff in sorted(changes.items()):
        valid = diff[~np.isnan(diff)]
        if not len(valid):
            continue
        rows.append({"layer": layer, "delta": delta, "inputs": int(len(valid)),
                     "mean": round(float(valid.mean()), 4), "std": round(float(valid.std()), 4),
                     "share_lower": round(float((valid < -margin).mean()), 4),
                     "share_higher": round(float((valid > margin).mean()), 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="examples/debian-sections/test.jsonl.gz")
    parser.add_argument("--samples", type=int, default=None, help="At most this many texts (default all).")
    parser.add_argument("--margin", type=float, default=0.05, help="Nats of loss change that count (default 0.05).")
    parser.add_argument("--json", action="store_true", help="Print the rows as JSON instead of a table.")
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint)
    tokenizer = data.tokenizer_from_str(load_tokenizer_json(args.checkpoint), f"{args.checkpoint}/tokenizer.json")
    examples = data.read_examples(args.data, require_labels=True, limit=args.samples)
    rows = summarise(loss_changes(model, tokenizer, examples), args.margin)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| layer | heads | inputs | mean dCE | std dCE | dCE < -{args.margin} | dCE > +{args.margin} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['layer']} | k{r['delta']:+d} | {r['inputs']} | {r['mean']:+.4f} | {r['std']:.4f} | "
              f"{r['share_lower']:.1%} | {r['share_higher']:.1%} |")


if __name__ == "__main__":
    main()
