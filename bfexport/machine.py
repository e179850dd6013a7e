"""The machine numbers were measured on: CPU, library versions, load average (calibration.json
and bench results record it, since timings only mean something beside where they ran)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor() or platform.machine())
    except OSError:
        return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {}
    for package in ("torch", "onnx", "onnxruntime", "numpy", "bfexport"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """Where the numbers were measured: platform, CPU model and count, library versions."""
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "versions": versions()}


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
