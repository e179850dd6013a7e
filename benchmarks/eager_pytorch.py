"""Eager PyTorch: the trained thresholds vs all heads, side by side in one run.

For each test text (batch 1, its own length), times model.predict at the checkpoint's
thresholds and at tau = 1 (every head), interleaved by bfexport.timing, and reports the median latency
ratio next to the cost model's FLOPs ratio.

    python benchmarks/eager_pytorch.py examples/debian-sections/checkpoint \
        --data examples/debian-sections/test.jsonl.gz --samples 300 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from bfexport import cost, data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.timing import time_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="examples/debian-sections/test.jsonl.gz")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    cfg = model.config
    tokenizer = data.tokenizer_from_str(load_tokenizer_json(args.checkpoint))
    texts = [e.text for e in data.read_examples(args.data, limit=args.samples)]
    everything = [1.0] * cfg.n_layers
    inputs = [tuple(torch.from_numpy(a) for a in data.encode(tokenizer, [text], cfg.max_length)) for text in texts]
    lengths = [ids.shape[1] for ids, _ in inputs]
    counts = [model.predict(ids, mask).head_counts[0].numpy() for ids, mask in inputs]
    configs = (None, everything)  # slot 0: the trained thresholds, slot 1: every head
    # interleaved per text in a rotating order (bfexport.timing), so drift hits both sides alike
    seconds = time_interleaved(lambda c, m: model.predict(*inputs[m], thresholds=configs[c]), len(configs),
                               len(inputs), repeats=args.repeats, warmup=0)
    trained, full = seconds[:, 0, :].ravel(), seconds[:, 1, :].ravel()
    result = {
        "checkpoint": args.checkpoint, "samples": len(texts), "repeats": args.repeats, "threads": args.threads,
        "mean_length": float(np.mean(lengths)),
        "mean_heads_per_layer": np.mean(counts, 0).round(3).tolist(),
        "flops_ratio_trained_vs_all_heads": cost.flops_ratio(cfg, lengths, np.array(counts))
        / cost.flops_ratio(cfg, lengths, np.full((len(texts), cfg.n_layers), cfg.n_heads)),
        "median_ms": {"trained": 1e3 * float(np.median(trained)), "all_heads": 1e3 * float(np.median(full))},
        "total_s": {"trained": float(trained.sum()), "all_heads": float(full.sum())},
        "speedup_total": float(full.sum() / trained.sum()),
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
