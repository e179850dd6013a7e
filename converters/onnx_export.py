"""Old import path of the exporter, kept only for converters/triton_repo.py (flavor_name) until
it imports converters.onnx; delete it then."""

from converters.onnx import (
    AdaptiveExport,
    DenseExport,
    ExportConfig,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
    export,
)
from converters.onnx.fixed import DenseWriter as _Exporter  # no importer left; goes with this file


def flavor_name(config: ExportConfig) -> str:
    return config.flavor


__all__ = ["AdaptiveExport", "DenseExport", "MaskedExport", "StaticExport", "TrtPluginExport", "_Exporter", "export",
           "flavor_name"]
