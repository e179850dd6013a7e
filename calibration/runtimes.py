"""The latency runtimes by name (`--runtime`), and which of them this machine can run.

A separate module from latency.py because the PyTorch and TensorRT runtimes build on
latency.py's interface; the registry imports them all, nothing imports the registry back.
"""

from __future__ import annotations

from bfexport.errors import BfexportError
from calibration.latency import LatencyRuntime, OrtCpuRuntime
from calibration.tensorrt_runtime import TensorRTRuntime
from calibration.torch_runtime import TorchCpuRuntime, TorchCudaRuntime

RUNTIMES: dict[str, type[LatencyRuntime]] = {
    "ort-cpu": OrtCpuRuntime,
    "torch-cpu": TorchCpuRuntime,
    "torch-cuda": TorchCudaRuntime,
    "tensorrt": TensorRTRuntime,
}


def available_runtimes() -> list[str]:
    """The runtimes this machine can run now (torch-cuda needs a CUDA device, tensorrt TensorRT too)."""
    return [name for name, cls in RUNTIMES.items() if cls.missing() is None]


def get_runtime(name: str) -> type[LatencyRuntime]:
    """The runtime class registered as `name`; a one-line error naming the choices, or what
    this machine lacks to run it."""
    if name not in RUNTIMES:
        raise BfexportError(f"unknown runtime '{name}'; choose from {', '.join(RUNTIMES)}")
    cls = RUNTIMES[name]
    why = cls.missing()
    if why is not None:
        raise BfexportError(f"runtime '{name}' cannot run on this machine: {why}; "
                            f"available here: {', '.join(available_runtimes())}")
    return cls
