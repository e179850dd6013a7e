"""The budgeted-attention TensorRT plugin that the `trt-plugin` flavor's nodes name
(the graph is written by converters/onnx/trt_plugin.py).

Graph: the trunk and the router are the adaptive flavor's, op for op; each attention block
is ONE custom node

    BudgetedAttention(hidden (B,S,d), mask (B,S), heads (B,H) int32, qkv_weight (H,d,3dh),
                      qkv_bias (H,3dh), out_weight (H,dh,d), out_bias (d,)) -> (B,S,d) float32

where `heads` holds each sample's selected heads by rank and -1 past its k (the router's
output, computed in the graph), and the mask is the attention mask in the graph's float
type. The output is float32 whatever the input type (the kernel accumulates the heads in
place); an fp16 graph casts it back. Shapes are static given (B, S): no data-dependent
shapes, no If, so one engine and CUDA graphs work for every budget.

Naming scheme, chosen so one file serves both runtimes:
  op_type "BudgetedAttention", domain "ai.onnx.contrib" (ONNX Runtime's Python custom ops
  live there: bfexport/ort_custom_ops.py runs the node on CPU), attributes
  plugin_namespace="bfexport" and plugin_version="1" (TensorRT's ONNX parser falls back to
  the plugin registry for an unknown op_type and takes the namespace from this attribute,
  which wins over the domain), aot=1 (use the AOT implementation), num_heads, head_dim.

Plugin: `register_plugin()` registers "bfexport::BudgetedAttention" with tensorrt.plugin
(quickly deployable plugins): the shape/dtype function, an AOT implementation (the fused
Triton kernel compiled to PTX, embedded in the engine, no Python at run time) and a JIT
implementation (Python; the faster three-kernel path). tensorrt is imported only there.

UNVERIFIED: everything that touches TensorRT (registration, the parser mapping, AOT and JIT
execution, engine build) has not run anywhere: TensorRT cannot be installed on the
development machines. Verified on CPU: the kernel in Triton's interpreter, PTX generation
for sm_90 (`compile_ptx`), and the exported graph under ONNX Runtime with the custom op
(see converters/GPU.md).
"""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Tuple

import onnx
from onnx import helper

from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS
from bfexport.names import PLUGIN_ID, PLUGIN_NAME

INPUTS = ("hidden", "mask", "heads", "qkv_weight", "qkv_bias", "out_weight", "out_bias")
FLOAT_TYPES = ("float32", "float16")
MAX_STATIC_SHARED = 48 * 1024  # above this a launch must opt in (cuFuncSetAttribute); an AOT launch may not
AOT_ARCH = 90  # sm_90 (H100 / H200)


# ---- shape and dtype rules (plain Python; the plugin's register function applies them) ----
Dim = int | str | None  # an int, a symbolic name, or unknown


def _same(a: Dim, b: Dim) -> bool:
    return a is None or b is None or a == b


def output_shape(input_shapes: Sequence[Sequence[Dim]]) -> tuple[Dim, ...]:
    """The output shape (B, S, d) from the seven input shapes, after checking them against each
    other (ints must agree; a symbolic or unknown dim agrees with anything of its name)."""
    if len(input_shapes) != len(INPUTS):
        raise ValueError(f"{PLUGIN_NAME} takes {len(INPUTS)} inputs ({', '.join(INPUTS)}), got {len(input_shapes)}")
    shapes = dict(zip(INPUTS, (tuple(s) for s in input_shapes), strict=True))
    ranks = {"hidden": 3, "mask": 2, "heads": 2, "qkv_weight": 3, "qkv_bias": 2, "out_weight": 3, "out_bias": 1}
    for name, rank in ranks.items():
        if len(shapes[name]) != rank:
            raise ValueError(f"{PLUGIN_NAME}: {name} must have rank {rank}, got shape {shapes[name]}")
    B, S, d = shapes["hidden"]
    H, d_w, three_dh = shapes["qkv_weight"]
    if isinstance(three_dh, int) and three_dh % 3:
        raise ValueError(f"{PLUGIN_NAME}: qkv_weight's last dim {three_dh} is not 3 * head_dim")
    dh = three_dh // 3 if isinstance(three_dh, int) else None
    checks = [("mask", shapes["mask"], (B, S)), ("qkv_weight", (d_w,), (d,)),
              ("qkv_bias", shapes["qkv_bias"], (H, three_dh)), ("out_weight", shapes["out_weight"], (H, dh, d)),
              ("out_bias", shapes["out_bias"], (d,)), ("heads", shapes["heads"][:1], (B,))]
    for name, got, want in checks:
        if not all(_same(a, b) for a, b in zip(got, want, strict=True)):
            raise ValueError(f"{PLUGIN_NAME}: {name} has shape {shapes[name]}, inconsistent with hidden "
                             f"{shapes['hidden']} and qkv_weight {shapes['qkv_weight']}")
    K = shapes["heads"][1]
    if isinstance(K, int) and isinstance(H, int) and not 1 <= K <= H:
        raise ValueError(f"{PLUGIN_NAME}: heads has {K} slots, must be 1..{H}")
    return (B, S, d)


def output_dtype(input_dtypes: Sequence[str]) -> str:
    """float32, after checking the inputs: hidden, mask and the weights share one float type
    (float32 or float16), heads is int32."""
    if len(input_dtypes) != len(INPUTS):
        raise ValueError(f"{PLUGIN_NAME} takes {len(INPUTS)} inputs, got {len(input_dtypes)} dtypes")
    types = dict(zip(INPUTS, input_dtypes, strict=True))
    if types["hidden"] not in FLOAT_TYPES:
        raise ValueError(f"{PLUGIN_NAME}: hidden must be one of {FLOAT_TYPES}, got {types['hidden']}")
    if types["heads"] != "int32":
        raise ValueError(f"{PLUGIN_NAME}: heads must be int32, got {types['heads']}")
    for name in ("mask", "qkv_weight", "qkv_bias", "out_weight", "out_bias"):
        if types[name] != types["hidden"]:
            raise ValueError(f"{PLUGIN_NAME}: {name} must be {types['hidden']} like hidden, got {types[name]}")
    return "float32"


def autotune_types() -> str:
    """The plugin's one type combination per I/O position (7 inputs, then the output): the
    float inputs are all FP32 or all FP16, heads INT32, the output always FP32."""
    return "FP32|FP16, FP32|FP16, INT32, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32"


def kernel_signature(dtype: str) -> dict[str, str]:
    """Triton signature of the fused kernel, in the order TensorRT's AOT launch passes
    arguments: input pointers, int32 scalars (seq_len), output pointers."""
    if dtype not in FLOAT_TYPES:
        raise ValueError(f"{PLUGIN_NAME}: dtype must be one of {FLOAT_TYPES}, got {dtype!r}")
    t = "*fp32" if dtype == "float32" else "*fp16"
    return {"x_ptr": t, "mask_ptr": t, "heads_ptr": "*i32", "wqkv_ptr": t, "bqkv_ptr": t, "wo_ptr": t, "bo_ptr": t,
            "seq_len": "i32", "out_ptr": "*fp32"}


def kernel_constexprs(num_heads: int, head_dim: int) -> dict[str, Any]:
    """The fused kernel's compile-time constants for a model of H heads of width dh: every
    batch size, sequence length and budget share them (heads has H slots, -1 past k)."""
    from converters.kernels.budgeted_attention import DOT_PRECISION, launch_config

    if num_heads < 1 or head_dim < 1:
        raise ValueError(f"{PLUGIN_NAME}: num_heads and head_dim must be positive, got {num_heads}, {head_dim}")
    cfg = launch_config(num_heads * head_dim, head_dim, "fused")
    return {"D": num_heads * head_dim, "DH": head_dim, "KMAX": num_heads, "DH_PAD": cfg.dh_pad,
            "BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n, "BLOCK_D": cfg.block_d, "BLOCK_O": cfg.block_o,
            "SM_SCALE": 1.0 / math.sqrt(head_dim), "MASK_BIAS": MASK_BIAS, "PRECISION": DOT_PRECISION}


def launch_grid(batch: int, seq: int, block_m: int) -> tuple[int, int, int]:
    """Programs of the fused kernel: (query blocks, samples, 1). The AOT implementation builds
    the same grid from TensorRT's symbolic shapes."""
    return (-(-seq // block_m), batch, 1)


@dataclass(frozen=True)
class CompiledKernel:
    name: str  # the PTX entry point
    ptx: str
    num_warps: int  # block_x = num_warps * 32
    shared: int  # bytes of shared memory per program
    arch: int
    constexprs: dict[str, Any]


def compile_ptx(dtype: str, num_heads: int, head_dim: int, *, arch: int = AOT_ARCH,
                ptx_version: int | None = None) -> CompiledKernel:
    """Compile the fused kernel to PTX for sm_<arch> with Triton; needs no GPU.

    ptx_version caps the PTX ISA (e.g. 85 for a CUDA 12.5 driver): Triton emits the ISA of its
    bundled ptxas, which an older driver cannot load. Must run in a process that does not
    interpret (TRITON_INTERPRET unset when triton was imported).
    """
    from converters.kernels.budgeted_attention import interpreting, kernel, launch_config, require_triton

    require_triton()
    if interpreting():
        raise BfexportError("compile_ptx: this process runs Triton's interpreter (TRITON_INTERPRET=1); "
                            "compile in a process without it")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    constexprs = kernel_constexprs(num_heads, head_dim)
    num_warps = launch_config(num_heads * head_dim, head_dim, "fused").num_warps
    options: dict[str, Any] = {"num_warps": num_warps, "num_stages": 2, "enable_fp_fusion": True}
    if ptx_version is not None:
        options["ptx_version"] = ptx_version
    src = ASTSource(fn=kernel("fused"), signature=kernel_signature(dtype), constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    meta = compiled.metadata
    for field in ("global_scratch_size", "profile_scratch_size"):
        if getattr(meta, field, 0):  # TensorRT passes null for Triton's hidden scratch pointers
            raise BfexportError(f"compile_ptx: the kernel needs Triton {field}={getattr(meta, field)}, "
                                "which a TensorRT AOT launch does not provide")
    if meta.shared > MAX_STATIC_SHARED:
        raise BfexportError(f"compile_ptx: the kernel needs {meta.shared} bytes of shared memory, over the "
                            f"{MAX_STATIC_SHARED} an AOT launch can use without opting in")
    return CompiledKernel(meta.name, compiled.asm["ptx"], meta.num_warps, meta.shared, arch, constexprs)


# ---- TensorRT registration (UNVERIFIED: needs TensorRT >= 10.9) ----------------------------
_REGISTERED = False


def register_plugin() -> None:
    """Register "bfexport::BudgetedAttention" with tensorrt.plugin: shape/dtype, autotune,
    AOT (fused Triton kernel as PTX) and JIT (three-kernel Triton path through PyTorch).
    Idempotent. UNVERIFIED: written against the TensorRT 10.9+ quickly-deployable-plugin API,
    never run (no TensorRT on the development machines)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from converters.tensorrt.loader import import_tensorrt

    trt = import_tensorrt()
    import tensorrt.plugin as trtp

    def dtype_name(t: Any) -> str:
        return {trt.float32: "float32", trt.float16: "float16", trt.int32: "int32"}.get(t, str(t))

    @trtp.register(PLUGIN_ID)  # type: ignore[untyped-decorator]  # tensorrt ships no type information
    def _describe(hidden: trtp.TensorDesc, mask: trtp.TensorDesc, heads: trtp.TensorDesc,
                  qkv_weight: trtp.TensorDesc, qkv_bias: trtp.TensorDesc, out_weight: trtp.TensorDesc,
                  out_bias: trtp.TensorDesc, num_heads: int, head_dim: int) -> trtp.TensorDesc:
        descs = (hidden, mask, heads, qkv_weight, qkv_bias, out_weight, out_bias)
        output_dtype([dtype_name(t.dtype) for t in descs])
        return trtp.from_shape_expr(hidden.shape_expr, dtype=trt.float32)

    @trtp.autotune(PLUGIN_ID)  # type: ignore[untyped-decorator]  # tensorrt ships no type information
    def _autotune(hidden: trtp.TensorDesc, mask: trtp.TensorDesc, heads: trtp.TensorDesc,
                  qkv_weight: trtp.TensorDesc, qkv_bias: trtp.TensorDesc, out_weight: trtp.TensorDesc,
                  out_bias: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc]) -> list[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination(autotune_types())]

    @trtp.aot_impl(PLUGIN_ID)  # type: ignore[untyped-decorator]  # tensorrt ships no type information
    def _aot(hidden: trtp.TensorDesc, mask: trtp.TensorDesc, heads: trtp.TensorDesc,
             qkv_weight: trtp.TensorDesc, qkv_bias: trtp.TensorDesc, out_weight: trtp.TensorDesc,
             out_bias: trtp.TensorDesc, num_heads: int, head_dim: int, outputs: Tuple[trtp.TensorDesc],
             tactic: int) -> tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymIntExprs]:
        cap = os.environ.get("BFEXPORT_PTX_VERSION")  # e.g. 85 when the driver predates Triton's ptxas
        compiled = compile_ptx(dtype_name(hidden.dtype), num_heads, head_dim, ptx_version=int(cap) if cap else None)
        batch, seq = hidden.shape_expr[0], hidden.shape_expr[1]
        params = trtp.KernelLaunchParams()
        params.grid_x = trtp.cdiv(seq, compiled.constexprs["BLOCK_M"])
        params.grid_y = batch
        params.block_x = compiled.num_warps * 32
        params.shared_mem = compiled.shared
        extra = trtp.SymIntExprs(1)
        extra[0] = trtp.SymInt32(seq)  # the kernel's one scalar: seq_len
        return compiled.name.encode(), compiled.ptx.encode(), params, extra

    @trtp.impl(PLUGIN_ID)  # type: ignore[untyped-decorator]  # tensorrt ships no type information
    def _jit(hidden: trtp.Tensor, mask: trtp.Tensor, heads: trtp.Tensor, qkv_weight: trtp.Tensor,
             qkv_bias: trtp.Tensor, out_weight: trtp.Tensor, out_bias: trtp.Tensor,
             outputs: Tuple[trtp.Tensor], stream: int) -> None:
        import torch

        from converters.kernels.budgeted_attention import budgeted_attention

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):  # type: ignore[no-untyped-call]  # untyped in torch
            args = [torch.as_tensor(t, device="cuda") for t in (hidden, mask, heads, qkv_weight, qkv_bias,
                                                                 out_weight, out_bias)]
            out = torch.as_tensor(outputs[0], device="cuda")
            out.copy_(budgeted_attention(*args, impl="split").float())

    _REGISTERED = True


def plugin_nodes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in proto.graph.node if n.op_type == PLUGIN_NAME]


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
