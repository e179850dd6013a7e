"""The machine a run timed on: versions, CPU, load average."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import onnx
import torch


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_average()}


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
