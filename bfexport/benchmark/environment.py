"""The machine a run timed on: versions, CPU, load average."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import onnx
import torch

from bfexport.machine import cpu_name, load_average


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_average()}
