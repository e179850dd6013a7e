"""Budgeted multi-head attention in OpenAI Triton: each sample runs only its selected heads.

The math is BudgetedAttention.forward_selected (bfexport/model.py), for one attention block:

    x        (B, S, d)    hidden states, already layer-normed
    mask     (B, S)       1 = token, 0 = padding; padding keys get (1 - mask) * MASK_BIAS
    heads    (B, K)       per sample, the selected head indices by rank; -1 marks an unused
                          slot (a sample whose k is below the batch's K). K <= H.
    qkv_weight (H, d, 3dh), qkv_bias (H, 3dh)   head h's [Wq_h | Wk_h | Wv_h]
    out_weight (H, dh, d),  out_bias (d,)       head h's rows of Wo
    out      (B, S, d) = sum over the sample's selected heads h of
                         softmax(q_h k_h^T / sqrt(dh) + key_bias) v_h @ Wo_h   + out_bias

A slot with head -1 does no work at all: its programs load one index and skip.

Two implementations of the same math:

  split (default; the fast one, three launches, no atomics, deterministic)
    1. _qkv_kernel        grid (S/BM, B*K): project x onto the slot's head -> scratch qkv
                          (B, K, 3, S, dh)
    2. _attention_kernel  grid (S/BM, B*K): flash attention (online softmax over key
                          blocks) for one (sample, slot, query block) -> ctx (B, S, K, dh)
    3. _out_proj_kernel   grid (S/BM, d/BO, B): out = sum over the sample's active slots
                          of ctx[:, :, slot] @ Wo[head] + out_bias (a gathered GEMM; each
                          output tile is owned by one program, so no atomics)
  fused (one launch, no scratch: what a TensorRT AOT plugin can embed, since an AOT
    quickly-deployable plugin launches exactly one kernel with (inputs, int32 scalars,
    outputs) arguments)
    _fused_kernel         grid (S/BM, B): for each active slot, project Q for the query
                          block, project K/V per key block on the fly, flash attention,
                          then add ctx @ Wo[head] into the program's own rows of a float32
                          output (its output is always float32; the wrapper casts back).
                          K/V projections are recomputed for every query block, so it
                          costs S/BM times the K/V projection work of `split`: correct and
                          self-contained, not fast at long sequences.

Accumulation is fp32 throughout; inputs and outputs are fp32 or fp16 (weights are cast
to the activations' dtype). fp32 dots use input_precision="ieee" (no TF32), so fp32
results match PyTorch to ~1e-6.

With TRITON_INTERPRET=1 in the environment before triton is imported, the kernels run on
CPU tensors in Triton's interpreter: that is how the tests check them without a GPU (in a
subprocess, since Triton fixes the mode at import). The kernels are plain functions wrapped
by triton.jit on first use (`kernel(name)`); converters/tensorrt/plugin.py compiles the fused one
to PTX in a process that does not interpret.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, cast

import torch

from bfexport.errors import BfexportError
from bfexport.model import (
    MASK_BIAS,
    BudgetedAttention,
    BudgetFormerConfig,
    BudgetFormerForSequenceClassification,
    Selection,
)

try:  # optional: the module (and the reference) import without Triton
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None

IMPLS = ("split", "fused")
DTYPES = {torch.float32: "fp32", torch.float16: "fp16"}
MIN_BLOCK = 16  # tl.dot needs every dimension >= 16 on NVIDIA GPUs
DOT_PRECISION = "ieee"  # fp32 dots without TF32, so fp32 parity holds; fp16 dots are fp16 x fp16 -> fp32


# ---- the PyTorch reference --------------------------------------------------------------
def reference_budgeted_attention(x: torch.Tensor, mask: torch.Tensor, heads: torch.Tensor,
                                 qkv_weight: torch.Tensor, qkv_bias: torch.Tensor, out_weight: torch.Tensor,
                                 out_bias: torch.Tensor) -> torch.Tensor:
    """The same computation in PyTorch (fp32), op for op as BudgetedAttention.forward_selected.

    heads (B, K) with -1 for unused slots; returns (B, S, d) in x's dtype.
    """
    dtype = x.dtype
    x = x.float()
    B, S, d = x.shape
    dh = qkv_weight.shape[-1] // 3
    heads = heads.long()
    active = heads >= 0  # (B, K)
    idx = heads.clamp(min=0)  # (B, K) unused slots read head 0, then get zero output weights
    key_bias = ((1.0 - mask.float()) * MASK_BIAS)[:, None, None, :]  # (B, 1, 1, S)
    w_qkv = qkv_weight.float()[idx]  # (B, K, d, 3dh)
    b_qkv = qkv_bias.float()[idx].unsqueeze(2)  # (B, K, 1, 3dh)
    qkv = x.unsqueeze(1) @ w_qkv + b_qkv  # (B, K, S, 3dh)
    q, k, v = torch.split(qkv, dh, dim=-1)  # (B, K, S, dh) each
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh) + key_bias  # (B, K, S, S)
    ctx = scores.softmax(-1) @ v  # (B, K, S, dh)
    K = heads.shape[1]
    ctx = ctx.transpose(1, 2).reshape(B, S, K * dh)  # (B, S, K*dh)
    w_out = out_weight.float()[idx] * active[:, :, None, None].float()  # (B, K, dh, d)
    return (ctx @ w_out.reshape(B, K * dh, d) + out_bias.float()).to(dtype)  # (B, S, d)


# ---- launch configuration (plain Python: shared by the wrapper and the TensorRT plugin) ----
def pow2(n: int, lo: int = MIN_BLOCK) -> int:
    """The smallest power of two >= max(n, lo) (tl.arange lengths must be powers of two)."""
    return max(lo, 1 << max(int(n) - 1, 0).bit_length())


@dataclass(frozen=True)
class LaunchConfig:
    block_m: int  # query rows per program
    block_n: int  # keys per inner step
    block_d: int  # model-width chunk in the projections
    block_o: int  # output columns per program (split out-projection)
    dh_pad: int  # head width rounded up to a power of two
    num_warps: int


def launch_config(d: int, dh: int, impl: str = "split", *, interpret: bool = False) -> LaunchConfig:
    """Block sizes for a model of width d and head width dh. Independent of B, S and k, so one
    compiled kernel serves every batch, sequence length and budget (what an engine needs)."""
    if impl not in IMPLS:
        raise BfexportError(f"budgeted attention: impl must be one of {IMPLS}, got {impl!r}")
    dh_pad = pow2(dh)
    wide = min(pow2(d), 64)
    if interpret:  # few, large programs: the interpreter's cost is per program, not per element
        return LaunchConfig(32, 32, wide, wide, dh_pad, 4)
    if impl == "fused":  # shared memory stays well under 48 KB (an AOT launch may not raise it)
        return LaunchConfig(64, 32, 32, 64, dh_pad, 4)
    return LaunchConfig(64, 64, 64 if dh_pad <= 64 else 32, 64, dh_pad, 4)


# ---- the kernels (plain functions; wrapped by kernel()) ------------------------------------
def _qkv_kernel(x_ptr, heads_ptr, wqkv_ptr, bqkv_ptr, seq_len, qkv_ptr,
                D: tl.constexpr, DH: tl.constexpr, KMAX: tl.constexpr, DH_PAD: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    """Q, K, V of one (sample, slot) for one block of rows -> qkv (B, K, 3, S, DH)."""
    pid_m = tl.program_id(0)
    pid_bs = tl.program_id(1)  # b * KMAX + slot
    b = pid_bs // KMAX
    h = tl.load(heads_ptr + pid_bs)
    if h >= 0:
        dtype = x_ptr.dtype.element_ty
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_e = tl.arange(0, DH_PAD)
        m_ok = offs_m < seq_len
        e_ok = offs_e < DH
        x_base = x_ptr + b.to(tl.int64) * seq_len * D
        w_base = wqkv_ptr + h.to(tl.int64) * (D * 3 * DH)
        q = tl.zeros((BLOCK_M, DH_PAD), dtype=tl.float32)
        k = tl.zeros((BLOCK_M, DH_PAD), dtype=tl.float32)
        v = tl.zeros((BLOCK_M, DH_PAD), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            xb = tl.load(x_base + offs_m[:, None] * D + offs_d[None, :], mask=m_ok[:, None] & d_ok[None, :], other=0.0)
            w_rows = w_base + offs_d[:, None] * (3 * DH) + offs_e[None, :]  # (BLOCK_D, DH_PAD) of W_q
            w_ok = d_ok[:, None] & e_ok[None, :]
            q = tl.dot(xb, tl.load(w_rows, mask=w_ok, other=0.0), q, input_precision=PRECISION)
            k = tl.dot(xb, tl.load(w_rows + DH, mask=w_ok, other=0.0), k, input_precision=PRECISION)
            v = tl.dot(xb, tl.load(w_rows + 2 * DH, mask=w_ok, other=0.0), v, input_precision=PRECISION)
        b_base = bqkv_ptr + h.to(tl.int64) * (3 * DH)
        q += tl.load(b_base + offs_e, mask=e_ok, other=0.0).to(tl.float32)[None, :]
        k += tl.load(b_base + DH + offs_e, mask=e_ok, other=0.0).to(tl.float32)[None, :]
        v += tl.load(b_base + 2 * DH + offs_e, mask=e_ok, other=0.0).to(tl.float32)[None, :]
        dst = qkv_ptr + pid_bs.to(tl.int64) * 3 * seq_len * DH + offs_m[:, None] * DH + offs_e[None, :]
        ok = m_ok[:, None] & e_ok[None, :]
        tl.store(dst, q.to(dtype), mask=ok)
        tl.store(dst + seq_len * DH, k.to(dtype), mask=ok)
        tl.store(dst + 2 * seq_len * DH, v.to(dtype), mask=ok)


def _attention_kernel(qkv_ptr, mask_ptr, heads_ptr, seq_len, ctx_ptr,
                      DH: tl.constexpr, KMAX: tl.constexpr, DH_PAD: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, SM_SCALE: tl.constexpr, MASK_BIAS: tl.constexpr,
                      PRECISION: tl.constexpr):
    """Flash attention of one (sample, slot, query block) -> ctx (B, S, K, DH); zeros for -1."""
    pid_m = tl.program_id(0)
    pid_bs = tl.program_id(1)
    b = pid_bs // KMAX
    slot = pid_bs % KMAX
    h = tl.load(heads_ptr + pid_bs)
    dtype = ctx_ptr.dtype.element_ty
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, DH_PAD)
    m_ok = offs_m < seq_len
    e_ok = offs_e < DH
    dst = ctx_ptr + b.to(tl.int64) * seq_len * KMAX * DH + offs_m[:, None] * (KMAX * DH) + slot * DH + offs_e[None, :]
    ok = m_ok[:, None] & e_ok[None, :]
    if h >= 0:
        base = qkv_ptr + pid_bs.to(tl.int64) * 3 * seq_len * DH
        q = tl.load(base + offs_m[:, None] * DH + offs_e[None, :], mask=ok, other=0.0)
        m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_M, DH_PAD), dtype=tl.float32)
        for n0 in range(0, seq_len, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_ok = offs_n < seq_len
            kv_ok = n_ok[:, None] & e_ok[None, :]
            kb = tl.load(base + seq_len * DH + offs_n[:, None] * DH + offs_e[None, :], mask=kv_ok, other=0.0)
            vb = tl.load(base + 2 * seq_len * DH + offs_n[:, None] * DH + offs_e[None, :], mask=kv_ok, other=0.0)
            keep = tl.load(mask_ptr + b.to(tl.int64) * seq_len + offs_n, mask=n_ok, other=0.0).to(tl.float32)
            s = tl.dot(q, tl.trans(kb), input_precision=PRECISION) * SM_SCALE + ((1.0 - keep) * MASK_BIAS)[None, :]
            s = tl.where(n_ok[None, :], s, float("-inf"))  # keys past the end of the sequence
            m_new = tl.maximum(m_i, tl.max(s, 1))  # finite from the first block on (key 0 exists)
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = tl.dot(p.to(dtype), vb, acc * alpha[:, None], input_precision=PRECISION)
            m_i = m_new
        tl.store(dst, (acc / l_i[:, None]).to(dtype), mask=ok)
    else:
        tl.store(dst, tl.zeros((BLOCK_M, DH_PAD), dtype=dtype), mask=ok)


def _out_proj_kernel(ctx_ptr, heads_ptr, wo_ptr, bo_ptr, seq_len, out_ptr,
                     D: tl.constexpr, DH: tl.constexpr, KMAX: tl.constexpr, DH_PAD: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr, PRECISION: tl.constexpr):
    """out[b, rows, cols] = sum over active slots of ctx[b, rows, slot] @ Wo[head][:, cols] + bias."""
    pid_m = tl.program_id(0)
    pid_o = tl.program_id(1)
    b = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_e = tl.arange(0, DH_PAD)
    m_ok = offs_m < seq_len
    o_ok = offs_o < D
    e_ok = offs_e < DH
    ctx_base = ctx_ptr + b.to(tl.int64) * seq_len * KMAX * DH + offs_m[:, None] * (KMAX * DH) + offs_e[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_O), dtype=tl.float32)
    for slot in range(KMAX):
        h = tl.load(heads_ptr + b * KMAX + slot)
        if h >= 0:
            c = tl.load(ctx_base + slot * DH, mask=m_ok[:, None] & e_ok[None, :], other=0.0)
            w = tl.load(wo_ptr + h.to(tl.int64) * (DH * D) + offs_e[:, None] * D + offs_o[None, :],
                        mask=e_ok[:, None] & o_ok[None, :], other=0.0)
            acc = tl.dot(c, w, acc, input_precision=PRECISION)
    acc += tl.load(bo_ptr + offs_o, mask=o_ok, other=0.0).to(tl.float32)[None, :]
    dst = out_ptr + b.to(tl.int64) * seq_len * D + offs_m[:, None] * D + offs_o[None, :]
    tl.store(dst, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & o_ok[None, :])


def _fused_kernel(x_ptr, mask_ptr, heads_ptr, wqkv_ptr, bqkv_ptr, wo_ptr, bo_ptr,  # inputs
                  seq_len,  # the one int32 scalar
                  out_ptr,  # output, float32 (this order is what a TensorRT AOT plugin passes)
                  D: tl.constexpr, DH: tl.constexpr, KMAX: tl.constexpr, DH_PAD: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_O: tl.constexpr,
                  SM_SCALE: tl.constexpr, MASK_BIAS: tl.constexpr, PRECISION: tl.constexpr):
    """The whole block in one launch: one program per (query block, sample), slots in a loop.

    The program owns rows [pid_m*BM, +BM) of sample b's output, so it accumulates the heads
    straight into the float32 output (bias first, then + ctx_h @ Wo_h per active head, in
    column chunks): no atomics, no scratch, small shared memory. A CTA barrier after each
    pass makes the stores visible to the threads that load the chunk next.
    """
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    dtype = x_ptr.dtype.element_ty
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, DH_PAD)
    m_ok = offs_m < seq_len
    e_ok = offs_e < DH
    x_base = x_ptr + b.to(tl.int64) * seq_len * D
    out_rows = out_ptr + b.to(tl.int64) * seq_len * D + offs_m[:, None] * D
    for o0 in range(0, D, BLOCK_O):
        offs_o = o0 + tl.arange(0, BLOCK_O)
        o_ok = offs_o < D
        bias = tl.load(bo_ptr + offs_o, mask=o_ok, other=0.0).to(tl.float32)
        tl.store(out_rows + offs_o[None, :], tl.zeros((BLOCK_M, BLOCK_O), dtype=tl.float32) + bias[None, :],
                 mask=m_ok[:, None] & o_ok[None, :])
    tl.debug_barrier()
    for slot in range(KMAX):
        h = tl.load(heads_ptr + b * KMAX + slot)
        if h >= 0:
            w_base = wqkv_ptr + h.to(tl.int64) * (D * 3 * DH)
            b_base = bqkv_ptr + h.to(tl.int64) * (3 * DH)
            q = tl.zeros((BLOCK_M, DH_PAD), dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                offs_d = d0 + tl.arange(0, BLOCK_D)
                d_ok = offs_d < D
                xb = tl.load(x_base + offs_m[:, None] * D + offs_d[None, :], mask=m_ok[:, None] & d_ok[None, :],
                             other=0.0)
                wq = tl.load(w_base + offs_d[:, None] * (3 * DH) + offs_e[None, :], mask=d_ok[:, None] & e_ok[None, :],
                             other=0.0)
                q = tl.dot(xb, wq, q, input_precision=PRECISION)
            q = (q + tl.load(b_base + offs_e, mask=e_ok, other=0.0).to(tl.float32)[None, :]).to(dtype)
            bk = tl.load(b_base + DH + offs_e, mask=e_ok, other=0.0).to(tl.float32)
            bv = tl.load(b_base + 2 * DH + offs_e, mask=e_ok, other=0.0).to(tl.float32)
            m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
            l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
            acc = tl.zeros((BLOCK_M, DH_PAD), dtype=tl.float32)
            for n0 in range(0, seq_len, BLOCK_N):
                offs_n = n0 + tl.arange(0, BLOCK_N)
                n_ok = offs_n < seq_len
                kb = tl.zeros((BLOCK_N, DH_PAD), dtype=tl.float32)
                vb = tl.zeros((BLOCK_N, DH_PAD), dtype=tl.float32)
                for d0 in range(0, D, BLOCK_D):  # K/V of this key block, recomputed per query block
                    offs_d = d0 + tl.arange(0, BLOCK_D)
                    d_ok = offs_d < D
                    xk = tl.load(x_base + offs_n[:, None] * D + offs_d[None, :], mask=n_ok[:, None] & d_ok[None, :],
                                 other=0.0)
                    w_rows = w_base + offs_d[:, None] * (3 * DH) + offs_e[None, :]
                    w_ok = d_ok[:, None] & e_ok[None, :]
                    kb = tl.dot(xk, tl.load(w_rows + DH, mask=w_ok, other=0.0), kb, input_precision=PRECISION)
                    vb = tl.dot(xk, tl.load(w_rows + 2 * DH, mask=w_ok, other=0.0), vb, input_precision=PRECISION)
                kb = (kb + bk[None, :]).to(dtype)
                vb = (vb + bv[None, :]).to(dtype)
                keep = tl.load(mask_ptr + b.to(tl.int64) * seq_len + offs_n, mask=n_ok, other=0.0).to(tl.float32)
                s = tl.dot(q, tl.trans(kb), input_precision=PRECISION) * SM_SCALE + ((1.0 - keep) * MASK_BIAS)[None, :]
                s = tl.where(n_ok[None, :], s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                alpha = tl.exp(m_i - m_new)
                p = tl.exp(s - m_new[:, None])
                l_i = l_i * alpha + tl.sum(p, 1)
                acc = tl.dot(p.to(dtype), vb, acc * alpha[:, None], input_precision=PRECISION)
                m_i = m_new
            ctx = (acc / l_i[:, None]).to(dtype)  # (BLOCK_M, DH_PAD)
            wo_base = wo_ptr + h.to(tl.int64) * (DH * D) + offs_e[:, None] * D
            for o0 in range(0, D, BLOCK_O):
                offs_o = o0 + tl.arange(0, BLOCK_O)
                o_ok = offs_o < D
                ok = m_ok[:, None] & o_ok[None, :]
                wo = tl.load(wo_base + offs_o[None, :], mask=e_ok[:, None] & o_ok[None, :], other=0.0)
                cur = tl.load(out_rows + offs_o[None, :], mask=ok, other=0.0)
                tl.store(out_rows + offs_o[None, :], tl.dot(ctx, wo, cur, input_precision=PRECISION), mask=ok)
            tl.debug_barrier()


KERNELS = {"qkv": _qkv_kernel, "attention": _attention_kernel, "out_proj": _out_proj_kernel, "fused": _fused_kernel}


def require_triton() -> None:
    if triton is None:
        raise BfexportError("OpenAI Triton is not installed: pip install triton "
                            "(the budgeted-attention kernel needs it)")


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter. Triton reads TRITON_INTERPRET when
    it is imported (its own tl helpers are decorated then), so set it before `import triton`;
    one process either interprets or compiles, never both."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def kernel(name: str) -> Any:
    """The kernel `name` wrapped by triton.jit: a JITFunction (GPU launch, or triton.compile to
    PTX), or an InterpretedFunction when the process interprets."""
    require_triton()
    return triton.jit(KERNELS[name])


def check_inputs(x: torch.Tensor, mask: torch.Tensor, heads: torch.Tensor, qkv_weight: torch.Tensor,
                 qkv_bias: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor) -> tuple[int, ...]:
    """(B, S, d, H, dh, K) after checking every shape against the others; BfexportError if not."""
    if x.dim() != 3:
        raise BfexportError(f"budgeted attention: x must be (batch, seq, d), got {tuple(x.shape)}")
    B, S, d = x.shape
    if qkv_weight.dim() != 3 or qkv_weight.shape[1] != d or qkv_weight.shape[2] % 3:
        raise BfexportError(f"budgeted attention: qkv_weight must be (H, {d}, 3*dh), got {tuple(qkv_weight.shape)}")
    H, dh = qkv_weight.shape[0], qkv_weight.shape[2] // 3
    expected = {"mask": (mask, (B, S)), "qkv_bias": (qkv_bias, (H, 3 * dh)), "out_weight": (out_weight, (H, dh, d)),
                "out_bias": (out_bias, (d,))}
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise BfexportError(f"budgeted attention: {name} must be {shape}, got {tuple(t.shape)}")
    if heads.dim() != 2 or heads.shape[0] != B or not 1 <= heads.shape[1] <= H:
        raise BfexportError(f"budgeted attention: heads must be (batch={B}, K) with 1 <= K <= {H}, "
                            f"got {tuple(heads.shape)}")
    if x.dtype not in DTYPES:
        raise BfexportError(f"budgeted attention: x must be float32 or float16, got {x.dtype}")
    return B, S, d, H, dh, heads.shape[1]


def budgeted_attention(x: torch.Tensor, mask: torch.Tensor, heads: torch.Tensor, qkv_weight: torch.Tensor,
                       qkv_bias: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor, *,
                       impl: str = "split", config: LaunchConfig | None = None) -> torch.Tensor:
    """Budgeted attention with the Triton kernels; returns (B, S, d) in x's dtype.

    Args:
        x: (B, S, d) float32/float16 hidden states (layer-normed).
        mask: (B, S) attention mask, any dtype, 1 = token, 0 = padding.
        heads: (B, K) selected head indices per sample, -1 for unused slots (int32 or int64).
            Head indices must be < H; they are not range-checked on the device.
        qkv_weight, qkv_bias, out_weight, out_bias: BudgetedAttention's per-head weights.
        impl: "split" (three launches, fast) or "fused" (one launch, the AOT plugin's kernel).
        config: block sizes; default launch_config(d, dh, impl).

    Example:
        out = budgeted_attention(h, mask, heads, attn.qkv_weight, attn.qkv_bias,
                                 attn.out_weight, attn.out_bias)
    """
    require_triton()
    B, S, d, H, dh, K = check_inputs(x, mask, heads, qkv_weight, qkv_bias, out_weight, out_bias)
    dtype = x.dtype
    x = x.contiguous()
    mask = mask.to(dtype).contiguous()
    heads = heads.to(torch.int32).contiguous()
    qkv_weight, qkv_bias, out_weight, out_bias = (t.to(dtype).contiguous()
                                                  for t in (qkv_weight, qkv_bias, out_weight, out_bias))
    interpret = interpreting()
    if not interpret and not x.is_cuda:
        raise BfexportError("budgeted attention: tensors must be on a CUDA device, or run with TRITON_INTERPRET=1 "
                            "set before triton is imported (Triton's CPU interpreter)")
    cfg = config or launch_config(d, dh, impl, interpret=interpret)
    common = dict(PRECISION=DOT_PRECISION)
    if impl == "fused":
        out32 = torch.empty(x.shape, dtype=torch.float32, device=x.device)  # the kernel accumulates in place
        kernel("fused")[(triton.cdiv(S, cfg.block_m), B)](
            x, mask, heads, qkv_weight, qkv_bias, out_weight, out_bias, S, out32,
            D=d, DH=dh, KMAX=K, DH_PAD=cfg.dh_pad, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
            BLOCK_O=cfg.block_o, SM_SCALE=1.0 / math.sqrt(dh), MASK_BIAS=MASK_BIAS, num_warps=cfg.num_warps, **common)
        return out32.to(dtype)
    if impl != "split":
        raise BfexportError(f"budgeted attention: impl must be one of {IMPLS}, got {impl!r}")
    qkv = torch.empty((B, K, 3, S, dh), dtype=dtype, device=x.device)
    ctx = torch.empty((B, S, K, dh), dtype=dtype, device=x.device)
    out = torch.empty_like(x)
    rows = triton.cdiv(S, cfg.block_m)
    kernel("qkv")[(rows, B * K)](
        x, heads, qkv_weight, qkv_bias, S, qkv, D=d, DH=dh, KMAX=K, DH_PAD=cfg.dh_pad, BLOCK_M=cfg.block_m,
        BLOCK_D=cfg.block_d, num_warps=cfg.num_warps, **common)
    kernel("attention")[(rows, B * K)](
        qkv, mask, heads, S, ctx, DH=dh, KMAX=K, DH_PAD=cfg.dh_pad, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        SM_SCALE=1.0 / math.sqrt(dh), MASK_BIAS=MASK_BIAS, num_warps=cfg.num_warps, **common)
    kernel("out_proj")[(rows, triton.cdiv(d, cfg.block_o), B)](
        ctx, heads, out_weight, out_bias, S, out, D=d, DH=dh, KMAX=K, DH_PAD=cfg.dh_pad, BLOCK_M=cfg.block_m,
        BLOCK_O=cfg.block_o, num_warps=cfg.num_warps, **common)
    return out


# ---- the model on the kernel --------------------------------------------------------------
class KernelAttention(BudgetedAttention):
    """BudgetedAttention whose inference path (forward_selected) runs the Triton kernel, so a
    BudgetFormer can run on a GPU without the eager gather. Same parameters; training
    (forward_gated) stays PyTorch, and attention dropout is not applied (inference only)."""

    def __init__(self, config: BudgetFormerConfig, impl: str = "split") -> None:
        if impl not in IMPLS:
            raise BfexportError(f"budgeted attention: impl must be one of {IMPLS}, got {impl!r}")
        super().__init__(config)
        self.impl = impl

    def forward_selected(self, x: torch.Tensor, key_bias: torch.Tensor, sel: Selection) -> torch.Tensor:
        heads = torch.where(sel.active, sel.heads, -1)  # (B, kmax), -1 past each sample's k
        mask = key_bias[:, 0, 0, :] == 0  # key_bias is 0 at tokens, MASK_BIAS at padding
        return budgeted_attention(x, mask, heads, self.qkv_weight, self.qkv_bias, self.out_weight, self.out_bias,
                                  impl=self.impl)


def use_kernel_attention(model: BudgetFormerForSequenceClassification,
                         impl: str = "split") -> BudgetFormerForSequenceClassification:
    """Swap every block's attention for a KernelAttention holding the same weights (in place, on
    the same device and dtype); returns the model.

    Example:
        model = use_kernel_attention(model.cuda().half())
        model.predict(ids.cuda(), mask.cuda())  # attention on the Triton kernel
    """
    for block in model.blocks:
        old = cast(BudgetedAttention, block.attn)
        new = KernelAttention(model.config, impl).to(old.out_bias.device, old.out_bias.dtype)
        new.load_state_dict(old.state_dict())
        block.attn = new.train(old.training)
    return model
