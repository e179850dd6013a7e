#!/usr/bin/env python
"""One prepared GPU run for the budgeted-attention kernel and, where installed, TensorRT.

    python scripts/gpu_check.py --out gpu-results            # the full check, < 8 minutes
    python scripts/gpu_check.py --out plan --dry-run         # no GPU: write the plan only

Needs a CUDA GPU with PyTorch and OpenAI Triton (CuPy and nvcc are not used). Sections, each
recorded even when another fails:
  1. parity   the Triton kernels (split and fused; fp32 and fp16) against the PyTorch
              reference on random shapes, budgets 1..H, mixed per-sample heads and padding;
              and a tiny BudgetFormer whose attention runs on the kernel, against predict().
  2. latency  the attention block (QKV projection, attention, output projection), fp16,
              d=768, H=12, for batch 1/8/32 x seq 128/512/2048 x k/H = 1/4, 1/2, 3/4, 1:
              dense PyTorch (SDPA forced to flash), the Triton split kernel, the Triton
              fused kernel (seq <= 512), and PyTorch with gathered weights + flash SDPA.
              ideal = H/k (every term of the block's cost is linear in k, BRIEF.md section 3);
              efficiency = (dense / budgeted) / ideal.
  3. tensorrt only if `import tensorrt` works: export a small model in the trt-plugin flavor,
              build an engine, compare its logits with ONNX Runtime + the Python custom op,
              and time both.
Writes results.json and results.md to --out, after every section (a timeout keeps what ran).
A wall-clock budget (--budget-s, default 420 s) skips the remaining timings when spent.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

D_MODEL, N_HEADS = 768, 12
BATCHES = (1, 8, 32)
SEQS = (128, 512, 2048)
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
FUSED_MAX_SEQ = 512  # the fused (AOT) kernel recomputes K/V per query block: slow beyond this
METHODS = ("dense_sdpa", "triton_split", "triton_fused", "torch_gather")


# ---- helpers that need no GPU (tested in tests/converters/test_budgeted_kernel.py) --------
def k_for(fraction: float, n_heads: int) -> int:
    """Heads run at budget fraction k/H (at least one)."""
    return max(1, min(n_heads, round(fraction * n_heads)))


def ideal_ratio(k: int, n_heads: int) -> float:
    """Dense cost / budgeted cost of the attention block: QKV 3Ld(k dh), scores and weighted
    sum L^2 (k dh) each, output L (k dh) d are all linear in k, so the ratio is H / k."""
    if not 1 <= k <= n_heads:
        raise ValueError(f"k must lie in 1..{n_heads}, got {k}")
    return n_heads / k


def efficiency(dense_ms: float, budget_ms: float, k: int, n_heads: int) -> float:
    """Measured speedup over the ideal one: 1.0 = every skipped head saved its full share."""
    return (dense_ms / budget_ms) / ideal_ratio(k, n_heads)


def plan(batches: Sequence[int] = BATCHES, seqs: Sequence[int] = SEQS, fractions: Sequence[float] = FRACTIONS,
         n_heads: int = N_HEADS) -> list[dict[str, Any]]:
    """The latency grid: one entry per (batch, seq, k), with the methods that run there."""
    out = []
    for batch in batches:
        for seq in seqs:
            for fraction in fractions:
                k = k_for(fraction, n_heads)
                methods = [m for m in METHODS if m != "triton_fused" or seq <= FUSED_MAX_SEQ]
                out.append({"batch": batch, "seq": seq, "k": k, "fraction": fraction, "methods": methods,
                            "ideal": ideal_ratio(k, n_heads)})
    return out


def random_heads(batch: int, k: int, n_heads: int, seed: int = 0, *, ragged: bool = False) -> list[list[int]]:
    """Per sample, k distinct heads in random order (different across samples); with ragged,
    sample i keeps only its first max(1, k - i % k) heads and pads with -1 (mixed budgets)."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(batch):
        heads = rng.sample(range(n_heads), k)
        if ragged:
            keep = max(1, k - i % k)
            heads = heads[:keep] + [-1] * (k - keep)
        rows.append(heads)
    return rows


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def latency_rows(timings: Sequence[dict[str, Any]], n_heads: int = N_HEADS) -> list[dict[str, Any]]:
    """Per (batch, seq, k): ms per method, speedups over dense and efficiency vs the ideal."""
    rows = []
    for t in timings:
        ms = t.get("ms", {})
        dense = ms.get("dense_sdpa")
        row = {"batch": t["batch"], "seq": t["seq"], "k/H": f"{t['k']}/{n_heads}", "ideal": t["ideal"]}
        for m in METHODS:
            row[f"{m} ms"] = ms.get(m)
        for m in ("triton_split", "triton_fused", "torch_gather"):
            if dense and ms.get(m):
                row[f"{m} speedup"] = dense / ms[m]
                row[f"{m} eff"] = efficiency(dense, ms[m], t["k"], n_heads)
        rows.append(row)
    return rows


def report_markdown(results: dict[str, Any]) -> str:
    parts = ["# GPU check", "", f"device: {results.get('device')}  ", f"versions: {results.get('versions')}", ""]
    parity = results.get("parity") or []
    if parity:
        parts += ["## Parity (max abs error vs PyTorch reference)", "",
                  markdown_table(parity, ["case", "impl", "dtype", "max_abs", "tol", "ok"]), ""]
    timings = results.get("latency") or []
    if timings:
        columns = ["batch", "seq", "k/H", "ideal"] + [f"{m} ms" for m in METHODS]
        columns += [f"{m} {w}" for m in ("triton_split", "triton_fused", "torch_gather") for w in ("speedup", "eff")]
        parts += ["## Attention block latency (fp16, d=768, H=12; median ms)", "",
                  markdown_table(latency_rows(timings), columns), ""]
    if results.get("tensorrt"):
        parts += ["## TensorRT", "", "```", json.dumps(results["tensorrt"], indent=2), "```", ""]
    if results.get("errors"):
        parts += ["## Errors", "", "```", *results["errors"], "```", ""]
    return "\n".join(parts)


def write_results(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    (out / "results.md").write_text(report_markdown(results) + "\n")


# ---- GPU sections -----------------------------------------------------------------------
def time_ms(fn: Callable[[], Any], *, min_reps: int = 10, min_s: float = 0.2, warmup: int = 3) -> float:
    """Median milliseconds of fn() with CUDA events (after warm-up, which includes compiles)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start_all < min_s:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        if len(times) >= 200:
            break
    times.sort()
    return times[len(times) // 2]


def random_weights(H: int, d: int, dtype: Any, device: str, seed: int = 0) -> dict[str, Any]:
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    dh = d // H
    w = {"qkv_weight": torch.randn(H, d, 3 * dh, generator=g) / math.sqrt(d),
         "qkv_bias": torch.randn(H, 3 * dh, generator=g) * 0.1,
         "out_weight": torch.randn(H, dh, d, generator=g) / math.sqrt(d),
         "out_bias": torch.randn(d, generator=g) * 0.1}
    return {k: v.to(device=device, dtype=dtype) for k, v in w.items()}


def parity_section(results: dict[str, Any]) -> None:
    import torch

    from converters.kernels.budgeted_attention import budgeted_attention, reference_budgeted_attention

    cases = [(2, 37, 64, 4, 4, True), (3, 200, 96, 6, 3, True), (4, 128, 768, 12, 12, False),
             (5, 300, 768, 12, 5, True), (2, 1, 64, 4, 2, False), (8, 512, 768, 12, 9, True)]
    tols = {torch.float32: 1e-4, torch.float16: 2e-2}
    for i, (B, S, d, H, k, ragged) in enumerate(cases):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(B, S, d, generator=g).cuda()
        mask = torch.ones(B, S)
        for b in range(B):
            mask[b, max(1, S - 7 * b):] = 0  # padding of different lengths
        mask = mask.cuda()
        heads = torch.tensor(random_heads(B, k, H, seed=i, ragged=ragged), dtype=torch.int32).cuda()
        w = random_weights(H, d, torch.float32, "cuda", seed=i)
        ref = reference_budgeted_attention(x, mask, heads, **w)
        scale = float(ref.abs().max())
        for dtype, tol in tols.items():
            for impl in ("split", "fused"):
                wd = {n: t.to(dtype) for n, t in w.items()}
                out = budgeted_attention(x.to(dtype), mask, heads, **wd, impl=impl).float()
                err = float((out - ref).abs().max())
                ok = err <= tol * max(1.0, scale)
                results["parity"].append({"case": f"B{B} S{S} d{d} H{H} k{k}{' ragged' if ragged else ''}",
                                          "impl": impl, "dtype": str(dtype).split(".")[-1], "max_abs": err,
                                          "tol": tol * max(1.0, scale), "ok": ok})
    results["parity"].extend(model_parity())


def model_parity() -> list[dict[str, Any]]:
    """A BudgetFormer whose attention blocks run on the kernel vs the same model in PyTorch."""
    import torch

    from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
    from converters.kernels.budgeted_attention import use_kernel_attention

    torch.manual_seed(0)
    cfg = BudgetFormerConfig(vocab_size=500, max_length=128, d_model=128, n_heads=8, n_layers=2, d_ff=256,
                             labels=["a", "b", "c"], dropout=0.0)
    model = BudgetFormerForSequenceClassification(cfg).cuda().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "router" in name:
                p.normal_(0, 1.0)
    ids = torch.randint(1, 500, (6, 100)).cuda()
    mask = torch.ones_like(ids)
    mask[1, 60:] = 0
    mask[4, 10:] = 0
    thresholds = torch.rand(6, 2) * 0.9 + 0.05
    ref = model.predict(ids, mask, thresholds=thresholds).logits
    rows = []
    for impl in ("split", "fused"):
        out = use_kernel_attention(copy.deepcopy(model), impl).predict(ids, mask, thresholds=thresholds).logits
        err = float((out - ref).abs().max())
        rows.append({"case": "BudgetFormer d128 H8 L2 logits", "impl": impl, "dtype": "float32", "max_abs": err,
                     "tol": 1e-4, "ok": err <= 1e-4})
    return rows


def latency_section(results: dict[str, Any], deadline: float) -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from converters.kernels.budgeted_attention import budgeted_attention

    H, d = N_HEADS, D_MODEL
    dh = d // H
    dtype = torch.float16
    w = random_weights(H, d, dtype, "cuda")
    # the same weights in the standard dense layout: W_qkv (d, 3d) = [all Q | all K | all V]
    w_dense = w["qkv_weight"].permute(1, 0, 2).reshape(d, H, 3, dh).permute(0, 2, 1, 3).reshape(d, 3 * d).contiguous()
    b_dense = w["qkv_bias"].reshape(H, 3, dh).permute(1, 0, 2).reshape(3 * d).contiguous()
    wo_dense = w["out_weight"].reshape(d, d).contiguous()

    def dense(x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        q, k, v = (x @ w_dense + b_dense).view(B, S, 3, H, dh).permute(2, 0, 3, 1, 4)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            ctx = F.scaled_dot_product_attention(q, k, v)
        return ctx.transpose(1, 2).reshape(B, S, d) @ wo_dense + w["out_bias"]

    def gathered(x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        idx = heads.long()
        qkv = x.unsqueeze(1) @ w["qkv_weight"][idx] + w["qkv_bias"][idx].unsqueeze(2)  # (B, k, S, 3dh)
        q, k, v = qkv.split(dh, dim=-1)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            ctx = F.scaled_dot_product_attention(q, k, v)
        ctx = ctx.transpose(1, 2).reshape(B, S, -1)
        return ctx @ w["out_weight"][idx].reshape(B, -1, d) + w["out_bias"]

    for entry in plan():
        B, S, k = entry["batch"], entry["seq"], entry["k"]
        timing = {**entry, "ms": {}}
        results["latency"].append(timing)
        if time.perf_counter() > deadline:
            timing["skipped"] = "time budget spent"
            continue
        x = torch.randn(B, S, d, device="cuda", dtype=dtype)
        mask = torch.ones(B, S, device="cuda", dtype=dtype)  # no padding: flash SDPA takes no mask
        heads = torch.tensor(random_heads(B, k, H, seed=B * S + k), dtype=torch.int32, device="cuda")
        fns = {"dense_sdpa": functools.partial(dense, x),
               "triton_split": functools.partial(budgeted_attention, x, mask, heads, **w, impl="split"),
               "triton_fused": functools.partial(budgeted_attention, x, mask, heads, **w, impl="fused"),
               "torch_gather": functools.partial(gathered, x, heads)}
        with torch.no_grad():
            for method in entry["methods"]:
                try:
                    timing["ms"][method] = time_ms(fns[method])
                except Exception as e:  # noqa: BLE001 - record and go on
                    timing.setdefault("errors", {})[method] = f"{type(e).__name__}: {e}"[:300]
        x = mask = heads = fns = None  # free GPU memory before the next shape
        torch.cuda.empty_cache()


def tensorrt_section(results: dict[str, Any], out: Path) -> None:
    """UNVERIFIED until it first runs on a machine with TensorRT."""
    try:
        import tensorrt as trt
    except Exception as e:  # noqa: BLE001
        results["tensorrt"] = {"skipped": f"tensorrt not importable ({type(e).__name__}: {e})"[:300]}
        return
    import numpy as np
    import torch

    from bfexport import ort_custom_ops
    from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
    from converters import TrtPluginExport, export_with_metadata, save_onnx
    from converters.tensorrt import build_engine

    torch.manual_seed(0)
    cfg = BudgetFormerConfig(vocab_size=1000, max_length=256, d_model=256, n_heads=8, n_layers=2, d_ff=512,
                             labels=["a", "b"], dropout=0.0)
    model = BudgetFormerForSequenceClassification(cfg).eval()
    proto = export_with_metadata(model, TrtPluginExport())
    onnx_path = save_onnx(proto, out / "trt_plugin.onnx")
    t0 = time.perf_counter()
    engine_path = build_engine(onnx_path, out / "trt_plugin.plan", max_batch=8, opt_batch=8, opt_seq=128,
                               max_seq=256, timing_cache=out / "timing.cache")
    info: dict[str, Any] = {"version": trt.__version__, "build_s": time.perf_counter() - t0}
    ids = np.random.default_rng(0).integers(1, 1000, (8, 128)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[3, 64:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask,
             "budget_thresholds": np.full((1, cfg.n_layers), 0.5, np.float32),
             "head_caps": np.full((1, cfg.n_layers), cfg.n_heads, np.int64)}
    session = ort_custom_ops.session(onnx_path)
    ort_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64, trt.int32: torch.int32}
    tensors: dict[str, torch.Tensor] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            tensors[name] = torch.from_numpy(feeds[name]).cuda()
            context.set_input_shape(name, tuple(feeds[name].shape))
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            tensors[name] = torch.empty(shape, dtype=dtypes[engine.get_tensor_dtype(name)], device="cuda")
    for name, t in tensors.items():
        context.set_tensor_address(name, t.data_ptr())
    stream = torch.cuda.Stream()

    def run_trt() -> None:
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()

    run_trt()
    logits = tensors["logits"].float().cpu().numpy()
    info["max_abs_vs_ort"] = float(np.abs(logits - ort_out["logits"]).max())
    info["head_sets_equal"] = bool((tensors["selected_heads"].cpu().numpy() == ort_out["selected_heads"]).all())
    info["trt_ms"] = time_ms(run_trt)
    t0 = time.perf_counter()
    for _ in range(3):
        session.run(None, feeds)
    info["ort_cpu_python_op_ms"] = (time.perf_counter() - t0) / 3 * 1000
    results["tensorrt"] = info


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("torch", "triton", "onnxruntime", "onnxruntime_extensions", "tensorrt", "cupy"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            out[name] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for results.json and results.md")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new timings after this")
    parser.add_argument("--dry-run", action="store_true", help="write the plan, touch no GPU")
    parser.add_argument("--skip", action="append", default=[], choices=("parity", "latency", "tensorrt"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results: dict[str, Any] = {"versions": versions(), "device": None, "parity": [], "latency": [],
                               "tensorrt": None, "errors": [], "plan": plan()}
    if args.dry_run:
        results["dry_run"] = True
        write_results(args.out, results)
        return 0
    import torch

    if not torch.cuda.is_available():
        results["errors"].append("no CUDA device")
        write_results(args.out, results)
        return 2
    results["device"] = torch.cuda.get_device_name()
    sections = [("parity", lambda: parity_section(results)),
                ("latency", lambda: latency_section(results, start + args.budget_s)),
                ("tensorrt", lambda: tensorrt_section(results, args.out))]
    for name, section in sections:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            section()
        except Exception:  # noqa: BLE001 - keep the other sections
            results["errors"].append(f"{name}: {traceback.format_exc()[-2000:]}")
        results.setdefault("seconds", {})[name] = time.perf_counter() - t0
        write_results(args.out, results)
    failed = [p for p in results["parity"] if not p["ok"]]
    return 1 if failed or results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
