"""The TensorRT path; tensorrt itself is imported only inside functions (loader), so
everything else in bfexport works without it.

  loader   `import tensorrt`, version-checked, naming the install extra when it fails.
  plugin   the BudgetedAttention plugin: shape/dtype rules, PTX compile, registration.
  engine   ONNX -> TensorRT engine with one optimization profile, plus its metadata.
"""

from converters.tensorrt.engine import (
    Profile,
    build_engine,
    engine_metadata,
    metadata_path,
    profile_shapes,
)
from converters.tensorrt.loader import INSTALL_HINT, MIN_TENSORRT, import_tensorrt

__all__ = ["INSTALL_HINT", "MIN_TENSORRT", "Profile", "build_engine", "engine_metadata", "import_tensorrt",
           "metadata_path", "profile_shapes"]
