"""The fixed names of a bfexport Triton repository: files, model-name suffixes, roles, tensors (graph tensor names
come from bfexport.names)."""

from __future__ import annotations

import re

from bfexport.files import DirKind
from bfexport.names import BUDGET_THRESHOLDS, HEAD_CAPS, HEAD_COUNTS, LOGITS

BACKENDS = ("onnxruntime", "tensorrt")
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}
VERSION = "1"
TOKENIZER_SUFFIX, ENSEMBLE_SUFFIX = "_tokenizer", "_text"
ROW_OUTPUTS = {BUDGET_THRESHOLDS: "row_thresholds", HEAD_CAPS: "row_caps"}  # tokenizer outputs
OUTPUTS = (LOGITS, HEAD_COUNTS)
CONFIG_FILE, LABELS_FILE, META_FILE, README = "config.pbtxt", "labels.txt", "bfexport.json", "README.md"
TOKENIZER_MODEL_FILE, TOKENIZER_JSON = "model.py", "tokenizer.json"
META_FORMAT = "bfexport.triton/1"
README_MARKER = "<!-- written by bfexport deploy; rewritten on each deploy -->"
ROLES = ("model", "tokenizer", "ensemble")
MODEL_DIRS = {role: DirKind(f"a Triton {role} directory", META_FILE, "role", role) for role in ROLES}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
