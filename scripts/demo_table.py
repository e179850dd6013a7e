"""The import demonstration's table (scripts/demo_import.sh writes its inputs): the dense
fine-tuned model as imported vs the same model budgetized with `train --init`, on the test split.

Accuracy, heads per layer and FLOPs come from `bfexport inspect --json` (PyTorch, every test
row); the attention share of the dense model's FLOPs from bfexport.cost on the test texts'
token lengths; ONNX Runtime latency side by side: the dense export and the budgetized adaptive
export run the same test texts one at a time (batch 1, 1 thread), interleaved rounds, medians.

    python scripts/demo_table.py --out demo-out --best budget-lr10 --data examples/debian-sections/test.jsonl.gz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bfexport import OnnxClassifier, data  # noqa: E402
from bfexport.checkpoint import load_config  # noqa: E402
from bfexport.cost import attention_share  # noqa: E402
from bfexport.timing import summarize, time_slots  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--best", required=True, help="the kept train --init checkpoint under --out")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=200, help="test texts timed per round")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    out = args.out
    texts = [e.text for e in data.read_examples(args.data, limit=args.samples)]
    sessions = {"dense": OnnxClassifier(out / "dense.onnx", threads=1),
                "budget": OnnxClassifier(out / "budget.onnx", threads=1)}
    inputs = [data.encode(sessions["dense"].tokenizer, [t], sessions["dense"].config.max_length) for t in texts]

    def runner(name: str):  # type: ignore[no-untyped-def]
        session = sessions[name]
        return lambda: [session.run(ids, mask) for ids, mask in inputs]

    seconds = time_slots([runner("dense"), runner("budget")], repeats=args.repeats, warmup=1)
    dense_ms, budget_ms = (summarize(s)["median_ms"] / len(texts) for s in seconds)
    config = load_config(out / "imported")
    tokenizer = sessions["dense"].tokenizer
    lengths = [len(ids) for ids in data.token_ids(tokenizer, [e.text for e in data.read_examples(args.data)],
                                                    config.max_length)]
    share = attention_share(config, lengths)
    rows = {"dense (imported, every head)": json.loads((out / "inspect-imported.json").read_text())}
    for name in ("budget-lr10", "budget-frozen"):
        rows[f"train --init, {name}" + (" (kept)" if name == args.best else "")] = json.loads(
            (out / f"inspect-{name}.json").read_text())
    print(f"attention share of the dense model's FLOPs on the test split: {share:.3f} "
          f"(mean length {np.mean(lengths):.1f} tokens)")
    print("| model | test accuracy | mean heads per layer | FLOPs vs dense | ORT latency vs dense |")
    print("| --- | --- | --- | --- | --- |")
    for label, r in rows.items():
        heads = ", ".join(f"{h:.2f}" for h in r["mean_heads_per_layer"])
        latency = {"dense (imported, every head)": "1.000"}.get(label, "")
        if label.endswith("(kept)"):
            latency = f"{budget_ms / dense_ms:.3f} ({budget_ms:.3f} vs {dense_ms:.3f} ms)"
        mean = float(np.mean(r["mean_heads_per_layer"]))
        print(f"| {label} | {r['accuracy']:.4f} | {heads} ({mean:.2f} of {config.n_heads}) | "
              f"{r['flops_ratio']:.3f} | {latency} |")
    result = {"attention_share": share, "dense_ms_per_text": dense_ms, "budget_ms_per_text": budget_ms,
              "latency_ratio": budget_ms / dense_ms, "timed_texts": len(texts), "repeats": args.repeats,
              "rows": {k: {"accuracy": v["accuracy"], "mean_heads_per_layer": v["mean_heads_per_layer"],
                           "flops_ratio": v["flops_ratio"]} for k, v in rows.items()}}
    (out / "table.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
