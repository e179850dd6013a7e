"""Old import path of converters.onnx.rebuild; nothing imports it any more (the bench harness
moved to bfexport/benchmark/): delete it with the other shims."""

from converters.onnx.rebuild import float_type, rebuild_model

__all__ = ["float_type", "rebuild_model"]
