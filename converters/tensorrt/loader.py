"""`import tensorrt`, lazily and version-checked, with the install extra named when it fails."""

from __future__ import annotations

from typing import Any

from bfexport.errors import BfexportError

MIN_TENSORRT = (10, 9)  # AOT quickly-deployable plugins
INSTALL_HINT = ("TensorRT is not installed: pip install 'bfexport[tensorrt]' on a machine with an NVIDIA GPU "
                "and TensorRT >= 10.9")


def import_tensorrt() -> Any:
    """`import tensorrt`, or BfexportError with the install hint (also when the Python bindings
    import but their libraries do not load, or the version is older than 10.9)."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        raise BfexportError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from None
    version = tuple(int(p) for p in str(getattr(trt, "__version__", "0")).split(".")[:2] if p.isdigit())
    if version < MIN_TENSORRT:
        raise BfexportError(f"{INSTALL_HINT}; found TensorRT {getattr(trt, '__version__', '?')}")
    return trt
