"""Old import path of converters.onnx.rebuild, kept only for converters/benchmark.py until it
imports the new one; delete it then."""

from converters.onnx.rebuild import float_type, rebuild_model

__all__ = ["float_type", "rebuild_model"]
