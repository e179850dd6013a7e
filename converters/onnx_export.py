"""Old import path of the exporter, kept only for converters/benchmark.py and
converters/triton_repo.py until they import converters.onnx; delete it then."""

from converters.onnx import (
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
    export,
)
from converters.onnx.fixed import DenseWriter as _Exporter  # benchmark.py's dense baselines subclass it


def flavor_name(config: ExportConfig) -> str:
    return config.flavor


__all__ = ["AdaptiveExport", "DenseExport", "MaskedExport", "StaticExport", "TrtPluginExport", "_Exporter", "export",
           "flavor_name"]
