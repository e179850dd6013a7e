"""The budgeted-attention kernel: its PyTorch reference is the model's math, and the Triton
kernels (split and fused) match the reference in Triton's CPU interpreter.

Triton fixes interpreter vs compiler mode when it is imported, so the interpreter runs in one
subprocess with TRITON_INTERPRET=1 (this process stays free to compile PTX). Skipped cleanly
when triton is not installed. Also tests the GPU script's CPU-side helpers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS
from bfexport.ort_custom_ops import budgeted_attention_numpy
from converters.kernels.budgeted_attention import check_inputs, launch_config, pow2, reference_budgeted_attention
from tests.factories import tiny_model

ROOT = Path(__file__).resolve().parents[2]


def weights(H: int, d: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dh = d // H
    return {"qkv_weight": torch.randn(H, d, 3 * dh, generator=g) * 0.3,
            "qkv_bias": torch.randn(H, 3 * dh, generator=g) * 0.1,
            "out_weight": torch.randn(H, dh, d, generator=g) * 0.3, "out_bias": torch.randn(d, generator=g) * 0.1}


def test_reference_is_the_models_forward_selected() -> None:
    model = tiny_model()
    attn = model.blocks[0].attn
    torch.manual_seed(1)
    x = torch.randn(5, 11, model.config.d_model)
    mask = torch.ones(5, 11, dtype=torch.long)
    mask[1, 6:] = 0
    mask[3, 2:] = 0
    tau = torch.tensor([0.1, 0.5, 0.9, 1.0, 0.3])
    sel = attn.router.select(x, mask.bool(), tau, torch.tensor(model.config.n_heads))
    assert len(set(sel.counts.tolist())) > 1  # mixed budgets in one batch
    key_bias = ((1 - mask).float() * MASK_BIAS)[:, None, None, :]
    with torch.no_grad():
        expected = attn.forward_selected(x, key_bias, sel)
        heads = torch.where(sel.active, sel.heads, -1)
        got = reference_budgeted_attention(x, mask, heads, attn.qkv_weight, attn.qkv_bias, attn.out_weight,
                                           attn.out_bias)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_numpy_op_matches_reference() -> None:
    w = weights(3, 24, seed=2)
    x = torch.randn(3, 9, 24)
    mask = torch.ones(3, 9)
    mask[2, 4:] = 0
    heads = torch.tensor([[2, 0, -1], [1, -1, -1], [-1, -1, -1]])  # the last sample runs nothing: bias only
    ref = reference_budgeted_attention(x, mask, heads, **w)
    got = budgeted_attention_numpy(x.numpy(), mask.numpy(), heads.numpy().astype(np.int32),
                                   *(t.numpy() for t in w.values()))
    assert np.abs(got - ref.numpy()).max() < 1e-5
    assert np.allclose(got[2], w["out_bias"].numpy()[None, :].repeat(9, 0), atol=1e-6)


def test_launch_config_blocks_are_powers_of_two_and_dot_sized() -> None:
    assert [pow2(n) for n in (1, 8, 16, 17, 64, 96)] == [16, 16, 16, 32, 64, 128]
    for impl in ("split", "fused"):
        for interpret in (False, True):
            cfg = launch_config(768, 64, impl, interpret=interpret)
            for value in (cfg.block_m, cfg.block_n, cfg.block_d, cfg.block_o, cfg.dh_pad):
                assert value >= 16 and value & (value - 1) == 0
    with pytest.raises(BfexportError, match="impl"):
        launch_config(64, 16, "flash")


def test_inputs_are_checked_against_each_other() -> None:
    w = weights(4, 32)
    x, mask, heads = torch.randn(2, 5, 32), torch.ones(2, 5), torch.zeros(2, 3, dtype=torch.long)
    assert check_inputs(x, mask, heads, **w) == (2, 5, 32, 4, 8, 3)
    with pytest.raises(BfexportError, match="mask"):
        check_inputs(x, torch.ones(2, 6), heads, **w)
    with pytest.raises(BfexportError, match="heads"):
        check_inputs(x, mask, torch.zeros(2, 5, dtype=torch.long), **w)  # more slots than heads
    with pytest.raises(BfexportError, match="out_weight"):
        check_inputs(x, mask, heads, **{**w, "out_weight": torch.zeros(4, 8, 31)})
    with pytest.raises(BfexportError, match="float32 or float16"):
        check_inputs(x.double(), mask, heads, **w)


# ---- the Triton kernels in the interpreter -------------------------------------------------
INTERPRETER_SCRIPT = textwrap.dedent("""
    import json, random, sys
    import torch
    from converters.kernels.budgeted_attention import budgeted_attention, reference_budgeted_attention

    def case(name, B, S, d, H, K, seed, *, lengths=None, heads=None, dtypes=(torch.float32,)):
        rng = random.Random(seed)
        g = torch.Generator().manual_seed(seed)
        dh = d // H
        w = {"qkv_weight": torch.randn(H, d, 3 * dh, generator=g) * 0.3,
             "qkv_bias": torch.randn(H, 3 * dh, generator=g) * 0.1,
             "out_weight": torch.randn(H, dh, d, generator=g) * 0.3, "out_bias": torch.randn(d, generator=g) * 0.1}
        x = torch.randn(B, S, d, generator=g)
        lengths = lengths or [rng.randint(1, S) for _ in range(B)]
        mask = (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]).long()
        if heads is None:  # per sample: its own k in 1..K and its own heads, -1 past k
            heads = []
            for _ in range(B):
                k = rng.randint(1, K)
                heads.append(rng.sample(range(H), k) + [-1] * (K - k))
        heads = torch.tensor(heads)
        ref = reference_budgeted_attention(x, mask, heads, **w)
        for dtype in dtypes:
            for impl in ("split", "fused"):
                out = budgeted_attention(x.to(dtype), mask, heads, **{n: t.to(dtype) for n, t in w.items()}, impl=impl)
                err = float((out.float() - ref).abs().max())
                print(json.dumps({"case": name, "impl": impl, "dtype": str(dtype)[6:], "err": err,
                                  "scale": float(ref.abs().max()), "ks": [int((r >= 0).sum()) for r in heads]}))

    H = 4
    for k in range(1, H + 1):  # every budget, the same k for the batch, different heads per sample
        rng = random.Random(k)
        case(f"k={k}", 3, 13, 32, H, k, k, heads=[rng.sample(range(H), k) for _ in range(3)])
    case("mixed", 4, 21, 32, H, H, 11)  # per-sample k and heads, ragged padding
    case("mixed-fp16", 3, 9, 32, H, 3, 12, dtypes=(torch.float16,))
    case("two-blocks", 2, 40, 32, H, 2, 13, lengths=[40, 35])  # > one query/key block (32)
    case("seq1", 2, 1, 32, H, 2, 14, lengths=[1, 1])
    case("odd-width", 2, 7, 24, 3, 3, 15)  # d=24, dh=8: model width not a power of two
    case("wide-head", 2, 6, 40, 2, 2, 16)  # dh=20: padded head width
    case("no-heads-row", 2, 5, 32, H, 2, 17, heads=[[3, 1], [-1, -1]])  # a sample running nothing
""")


@pytest.fixture(scope="module")
def interpreter_results() -> list[dict]:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", INTERPRETER_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_kernels_match_reference_in_interpreter(interpreter_results: list[dict]) -> None:
    tolerance = {"float32": 1e-5, "float16": 1e-2}
    bad = [r for r in interpreter_results if r["err"] > tolerance[r["dtype"]] * max(1.0, r["scale"])]
    assert not bad, bad
    assert {r["impl"] for r in interpreter_results} == {"split", "fused"}
    assert {r["dtype"] for r in interpreter_results} == {"float32", "float16"}


def test_interpreter_cases_cover_every_budget_and_mixed_batches(interpreter_results: list[dict]) -> None:
    ks = {k for r in interpreter_results for k in r["ks"]}
    assert {1, 2, 3, 4} <= ks
    assert any(len(set(r["ks"])) > 1 for r in interpreter_results)  # different k within one batch
    assert any(0 in r["ks"] for r in interpreter_results)  # a sample with no head at all
    assert len({r["case"] for r in interpreter_results}) == 11


# ---- scripts/gpu_check.py: the parts that need no GPU ----------------------------------------
@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_plan_and_ratios(gpu_check) -> None:
    assert [gpu_check.k_for(f, 12) for f in gpu_check.FRACTIONS] == [3, 6, 9, 12]
    assert gpu_check.k_for(0.01, 12) == 1
    assert gpu_check.ideal_ratio(3, 12) == 4.0
    assert gpu_check.efficiency(8.0, 4.0, 3, 12) == pytest.approx(0.5)
    plan = gpu_check.plan()
    assert len(plan) == 3 * 3 * 4
    assert all("triton_fused" not in p["methods"] for p in plan if p["seq"] > gpu_check.FUSED_MAX_SEQ)
    heads = gpu_check.random_heads(6, 4, 12, seed=3, ragged=True)
    assert all(len(r) == 4 and r[0] >= 0 for r in heads)
    assert all(len({h for h in r if h >= 0}) == sum(h >= 0 for h in r) for r in heads)  # distinct heads
    assert len({sum(h >= 0 for h in r) for r in heads}) > 1


def test_gpu_check_report_and_dry_run(gpu_check, tmp_path: Path) -> None:
    timings = [{"batch": 1, "seq": 128, "k": 3, "ideal": 4.0,
                "ms": {"dense_sdpa": 1.0, "triton_split": 0.5, "torch_gather": 2.0}}]
    rows = gpu_check.latency_rows(timings)
    assert rows[0]["triton_split speedup"] == 2.0 and rows[0]["triton_split eff"] == 0.5
    assert "triton_fused speedup" not in rows[0]
    results = {"device": "x", "versions": {}, "parity": [{"case": "c", "impl": "split", "dtype": "float32",
                                                          "max_abs": 1e-7, "tol": 1e-4, "ok": True}],
               "latency": timings, "tensorrt": None, "errors": []}
    md = gpu_check.report_markdown(results)
    assert "| 1 | 128 | 3/12 | 4 |" in md and "## Parity" in md
    assert gpu_check.main(["--out", str(tmp_path / "plan"), "--dry-run"]) == 0
    written = json.loads((tmp_path / "plan" / "results.json").read_text())
    assert written["dry_run"] and len(written["plan"]) == 36
    assert (tmp_path / "plan" / "results.md").read_text().startswith("# GPU check")
