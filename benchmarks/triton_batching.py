"""Does Triton's dynamic batcher merge single-text requests once the tokenizer pads to length
buckets? Throughput, p50/p99 latency and the classifier's mean batch size at 1, 4 and 16
concurrent clients, bucketed (--pad-buckets pow2: 16, 32, ..., max_length), fine buckets (8, 16,
24, 32, 48, ...) and exact-length padding (the default on ONNX Runtime), on a real tritonserver
(loopback only, bounded request counts).

The deploys go into one repository (sections_bucketed, sections_fine, sections_exact,
max_batch_size 8, dynamic batching), served by one server; each point sends the same natural texts, one per request,
through the text ensemble; the variants alternate within each round so that load on the machine
hits both alike. Without an onnxruntime backend in the server (the nvidia-pytriton wheel), the
classifier runs in ONNX Runtime through the python backend (the live check's stand-in), as
the results file says.

    python benchmarks/triton_batching.py --stub-python .venv-serve/bin/python           # ~4 minutes
    python benchmarks/triton_batching.py --quick                                        # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bfexport import data
from bfexport.timing import summarize
from converters.triton import DeployOptions, deploy
from converters.triton.live_check import LiveOptions, bfexport_models, find_live_server, served_copy
from converters.triton.options import POWERS_OF_TWO
from converters.triton.server import TritonServer

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"bucketed": POWERS_OF_TWO, "fine": (8, 16, 24, 32, 48, 64, 96, 128, 192), "exact": ()}  # pad_buckets


def point(server: TritonServer, model: str, ensemble: str, texts: list[str], clients: int,
          requests: int) -> dict[str, float]:
    """`requests` one-text requests from `clients` threads in closed loops: throughput, p50/p99,
    the classifier's mean batch size (Triton's statistics: inferences / executions)."""
    client = server.client()

    def worker(index: int) -> list[float]:
        latencies = []
        for i in range(index, requests, clients):
            text = np.array([[texts[i % len(texts)].encode()]], dtype=np.object_)
            start = time.perf_counter()
            client.infer(ensemble, {"text": text}, ["logits"])
            latencies.append(time.perf_counter() - start)
        return latencies

    before = client.statistics(model)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for part in pool.map(worker, range(clients)) for x in part]
    wall = time.perf_counter() - start
    after = client.statistics(model)
    executions = int(after["execution_count"]) - int(before["execution_count"])
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    summary = summarize(latencies)
    return {"requests_per_s": len(latencies) / wall, "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
            "mean_batch": inferences / executions, "requests": len(latencies), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "examples/debian-sections/checkpoint"))
    parser.add_argument("--data", default=str(ROOT / "examples/debian-sections/test.jsonl.gz"))
    parser.add_argument("--stub-python", default=None, help="the stub's Python (numpy < 2, tokenizers, onnxruntime)")
    parser.add_argument("--tritonserver", default=None)
    parser.add_argument("--requests", type=int, default=400, help="requests per point and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="bucketed (--pad-buckets pow2: 16, 32, ...), "
                        "fine (8, 16, 24, 32, 48, ... 192), exact (the default on ONNX Runtime)")
    parser.add_argument("--quick", action="store_true", help="60 requests, 1 round, nothing written")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/triton_batching.json"))
    args = parser.parse_args()
    requests, rounds = (60, 1) if args.quick else (args.requests, args.rounds)
    clients = [int(c) for c in args.clients.split(",")]
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    texts = [e.text for e in data.read_examples(args.data, limit=1000)]
    found = find_live_server(LiveOptions(tritonserver=args.tritonserver, stub_python=args.stub_python))
    work = Path(tempfile.mkdtemp(prefix="bfexport-bench-triton-"))
    try:
        repo = work / "repo"
        for variant, buckets in variants.items():
            deploy(args.checkpoint, repo, DeployOptions(name=f"sections_{variant}", pad_buckets=buckets))
        models = bfexport_models(repo)
        copy = served_copy(repo, models, work / "served", not found[0].has_onnxruntime)
        results: dict[str, dict[str, list[dict[str, float]]]] = {v: {str(c): [] for c in clients} for v in variants}
        load_before = list(os.getloadavg())
        with TritonServer.start(copy, *found) as server:
            for meta in models:
                server.load(*meta["models"].values())
            for variant in variants:  # warm-up: every instance, every bucket
                point(server, f"sections_{variant}", f"sections_{variant}_text", texts, 4, 80)
            for round_ in range(rounds):
                for c in clients:
                    order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
                    for variant in order:
                        got = point(server, f"sections_{variant}", f"sections_{variant}_text", texts, c, requests)
                        results[variant][str(c)].append(got)
                        print(f"round {round_} clients {c:2d} {variant:8s} {got['requests_per_s']:6.1f} req/s "
                              f"p50 {got['p50_ms']:6.1f} ms p99 {got['p99_ms']:6.1f} ms mean batch "
                              f"{got['mean_batch']:.2f}", file=sys.stderr)
        load_after = list(os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = ["| clients | padding | requests/s | p50 ms | p99 ms | mean batch |",
             "| --- | --- | --- | --- | --- | --- |"]
    combined: dict[str, dict[str, dict[str, float]]] = {}
    for c in clients:
        for variant in variants:
            runs = results[variant][str(c)]
            total = sum(r["requests"] for r in runs)
            merged = {"requests_per_s": total / sum(r["wall_s"] for r in runs),
                      "p50_ms": float(np.median([r["p50_ms"] for r in runs])),
                      "p99_ms": float(np.median([r["p99_ms"] for r in runs])),
                      "mean_batch": float(np.mean([r["mean_batch"] for r in runs]))}
            combined.setdefault(variant, {})[str(c)] = merged
            table.append(f"| {c} | {variant} | {merged['requests_per_s']:.0f} | {merged['p50_ms']:.1f} | "
                         f"{merged['p99_ms']:.1f} | {merged['mean_batch']:.2f} |")
    print("\n".join(table))
    if args.quick:
        return
    out = {"what": "one-text requests to NAME_text, max_batch_size 8, dynamic batching, loopback",
           "server": str(found[0].path), "onnxruntime_backend": found[0].has_onnxruntime,
           "classifier_served_by": "onnxruntime backend" if found[0].has_onnxruntime else
           "python backend running ONNX Runtime (converters/triton/ort_model.py)",
           "pad_buckets": {v: [b for b in buckets if b < 256] for v, buckets in variants.items()},
           "requests_per_point_and_round": requests, "rounds": rounds, "texts": f"{args.data} (first 1000)",
           "combined": combined, "runs": results, "cpu_count": os.cpu_count(),
           "platform": platform.platform(), "loadavg_before": load_before, "loadavg_after": load_after,
           "command": " ".join(["python", *sys.argv])}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
