"""Old import path of converters.onnx.metadata, kept only for converters/triton_repo.py until
it imports the new one; delete it then."""

from converters.onnx.metadata import ExportedModel, load_exported

__all__ = ["ExportedModel", "load_exported"]
