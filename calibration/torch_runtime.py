"""PyTorch latency runtimes: `torch-cpu` (eager, the model's own head gather) and `torch-cuda`
(the same model on a CUDA GPU, attention through the budgeted-attention Triton kernel).

Why: to price budgets where the model will be served from PyTorch rather than from an ONNX
graph. The model is rebuilt from the exported file (converters.onnx.rebuild), so calibration still
needs nothing but MODEL.onnx, and thresholds / caps go in per call as with ONNX Runtime.
The model's forward syncs with the device where its shapes depend on the data (the batch's
largest k per layer): that cost is part of what eager PyTorch costs and is measured with it.

torch-cuda is UNVERIFIED: no GPU was available where it was written. Its kernel path runs on
CPU in Triton's interpreter in the tests (same logits as eager PyTorch); the CUDA timing has
never run.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import onnx
import torch

from bfexport.exported import ExportedModel
from calibration.evaluate import Config
from calibration.latency import Batch, LatencyRuntime, time_ms
from converters.onnx.rebuild import float_type, rebuild_model


class TorchRuntime(LatencyRuntime):
    """The rebuilt BudgetFormer in PyTorch on `device`; subclasses pick the device and whether
    attention runs on the Triton kernel. dtype defaults to the file's float type."""

    device: ClassVar[str] = "cpu"
    kernel: ClassVar[bool] = False  # attention through converters.kernels (Triton) instead of the eager gather

    def __init__(self, exported: ExportedModel, threads: int | None = None, *,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(exported, threads)
        self.dtype = dtype or (torch.float16 if float_type(exported) == onnx.TensorProto.FLOAT16 else torch.float32)
        model = rebuild_model(exported).to(self.device, self.dtype)
        if self.kernel:
            from converters.kernels.budgeted_attention import use_kernel_attention  # imports triton

            model = use_kernel_attention(model)
        self.model = model

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "torch": torch.__version__, "device": self.device,
                "dtype": str(self.dtype).removeprefix("torch."),
                "threads": self.threads or f"default ({torch.get_num_threads()})",
                "attention": "Triton budgeted_attention kernel (split)" if self.kernel
                else "eager gather (BudgetedAttention.forward_selected)"}

    def fresh(self) -> TorchRuntime:
        return type(self)(self.exported, self.threads, dtype=self.dtype)

    def sync(self) -> None:
        """Wait for the device (no-op on the CPU, where calls return when done)."""

    def measure(self, batches: Sequence[Batch], configs: Sequence[Config], repeats: int,
                warmup: int = 1) -> np.ndarray:
        dev = self.device
        inputs = [(torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev)) for ids, mask in batches]
        budgets = [(torch.tensor(c.thresholds, dtype=torch.float32, device=dev),
                    torch.tensor(c.caps, dtype=torch.long, device=dev)) for c in configs]

        def call(c: int, m: int) -> None:
            self.model(*inputs[m], thresholds=budgets[c][0], caps=budgets[c][1])

        with torch.inference_mode(), _threads(self.threads):
            return time_ms(call, configs, batches, repeats=repeats, warmup=warmup, sync=self.sync)


class TorchCpuRuntime(TorchRuntime):
    """PyTorch eager on the CPU: the model's own gather of the selected heads' weights."""

    name = "torch-cpu"
    about = "PyTorch eager on the CPU, the model's own head gather"


class TorchCudaRuntime(TorchRuntime):
    """PyTorch on a CUDA GPU, attention on the Triton kernel; timed to completion
    (torch.cuda.synchronize before the clock stops). UNVERIFIED: never run on a GPU."""

    name = "torch-cuda"
    about = "PyTorch on a CUDA GPU, attention on the Triton kernel (unverified: never run on a GPU)"
    device = "cuda"
    kernel = True

    @classmethod
    def missing(cls) -> str | None:
        if importlib.util.find_spec("triton") is None:
            return "OpenAI Triton is not installed: pip install triton (the budgeted-attention kernel needs it)"
        if os.environ.get("TRITON_INTERPRET") == "1":
            return "TRITON_INTERPRET=1 is set: Triton would run the kernel in its CPU interpreter"
        return cuda_missing()

    def describe(self) -> dict[str, Any]:
        import triton

        return {**super().describe(), "device": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
                "triton": triton.__version__}

    def sync(self) -> None:
        torch.cuda.synchronize()


def cuda_missing() -> str | None:
    """Why PyTorch cannot use a CUDA device here, or None when it can."""
    if torch.cuda.is_available():
        return None
    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"PyTorch sees no CUDA device (torch {torch.__version__}, {build})"


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count is process-wide: set it for the measurement only."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
