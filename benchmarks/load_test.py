"""Bounded load test of OnnxClassifier: many threads, random per-request budgets, one session.

Every response is checked against a single-threaded run of the same (text, budget), so a
result mixed between requests is caught; prints throughput and p50/p99 latency for the
adaptive model under random budgets and for the dense export of the same checkpoint.

    python benchmarks/load_test.py examples/debian-sections/checkpoint --threads 8 --requests 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bfexport import OnnxClassifier, data, load_checkpoint
from bfexport.checkpoint import load_tokenizer_json
from bfexport.timing import summarize
from converters import AdaptiveExport, DenseExport, export_with_metadata, save_onnx


def run(clf: OnnxClassifier, texts: list[str], budgets: list, threads: int) -> dict:
    """Send every (text, budget) once from `threads` threads; check each against expected."""
    expected = [clf.classify([t], thresholds=b)[0] for t, b in zip(texts, budgets, strict=True)]
    latencies = np.zeros(len(texts))

    def one(i: int) -> bool:
        start = time.perf_counter()
        got = clf.classify([texts[i]], thresholds=budgets[i])[0]
        latencies[i] = time.perf_counter() - start
        return got == expected[i]

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = list(pool.map(one, range(len(texts))))
    wall = time.perf_counter() - start
    latency = summarize(latencies.tolist())  # per request, under concurrency: not the interleaved loop
    return {"requests": len(texts), "mismatches": ok.count(False), "throughput_rps": len(texts) / wall,
            "p50_ms": latency["p50_ms"], "p99_ms": latency["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="examples/debian-sections/test.jsonl.gz")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint)
    tokenizer_json = load_tokenizer_json(args.checkpoint)
    rows = data.read_examples(args.data)
    rng = np.random.default_rng(0)
    texts = [rows[i % len(rows)].text for i in range(args.requests)]
    L = model.config.n_layers
    budgets = [rng.uniform(0.05, 1.0, L).round(3).tolist() for _ in texts]
    result = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flavor, per_request in (("adaptive", AdaptiveExport(), budgets),
                                          ("dense", DenseExport(), [None] * len(texts))):
            path = save_onnx(export_with_metadata(model, flavor, tokenizer_json), Path(tmp) / f"{name}.onnx")
            result[name] = run(OnnxClassifier(path), texts, per_request, args.threads)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
