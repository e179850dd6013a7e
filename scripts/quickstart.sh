#!/usr/bin/env bash
# The main job on the embedded default: the shipped checkpoint and dataset, ONNX Runtime on CPU.
# convert -> validate -> calibrate -> report, everything written under ${OUT:-out/quickstart}.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=examples/debian-sections/checkpoint
DATA=examples/debian-sections
OUT=${OUT:-out/quickstart}
mkdir -p "$OUT"

bfexport convert "$CKPT" -o "$OUT/model.onnx" --force  # --force: a re-run replaces its own outputs
bfexport validate "$CKPT" "$OUT/model.onnx" --data "$DATA/test.jsonl.gz" --samples 200
bfexport calibrate "$OUT/model.onnx" --data "$DATA/validation.jsonl.gz" --samples 1000 --target-flops 0.7 \
    -o "$OUT/calibration.json" --write-model "$OUT/model-calibrated.onnx" --report "$OUT/report" --force
bfexport inspect "$OUT/model-calibrated.onnx" --data "$DATA/test.jsonl.gz"
echo "done: see $OUT/ (calibration.json, model-calibrated.onnx, report/)"
