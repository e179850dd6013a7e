"""Old import path of bfexport.exported, kept only for converters/triton_repo.py until it
imports the new one; delete it then."""

from bfexport.exported import ExportedModel, load_exported

__all__ = ["ExportedModel", "load_exported"]
