#!/usr/bin/env bash
# Refactor check: export every flavor of the shipped checkpoint (and a Triton repository) with the
# code at REV and with the working tree, in the same run, and compare. ONNX files and the --hf-dir
# must be byte-identical; config.pbtxt must parse (Triton's ModelConfig) to equal messages, and
# bfexport.json may differ only in `created`. Usage: bash scripts/compare_exports.sh REV
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: compare_exports.sh REV}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git archive "$REV" | tar -x -C "$WORK" --one-top-level=old

export_all() {  # TREE OUT
    (cd "$1" && export PYTHONPATH=$PWD && C=examples/debian-sections/checkpoint O=$2 && mkdir -p "$O" &&
     bfexport -q convert $C -o "$O/adaptive.onnx" &&
     bfexport -q convert $C -o "$O/masked.onnx" --flavor masked &&
     bfexport -q convert $C -o "$O/dense.onnx" --flavor dense &&
     bfexport -q convert $C -o "$O/static.onnx" --flavor static --head-sets '0,1;2,3;0,5;1,2' &&
     bfexport -q convert $C -o "$O/static-data.onnx" --flavor static --heads 3 \
         --data examples/debian-sections/validation.jsonl.gz --samples 64 &&
     bfexport -q convert $C -o "$O/trt-plugin.onnx" --flavor trt-plugin &&
     bfexport -q convert $C -o "$O/trt-plugin-fp16.onnx" --flavor trt-plugin --fp16 &&
     bfexport -q convert $C -o "$O/adaptive-fp16.onnx" --fp16 &&
     bfexport -q convert $C -o "$O/adaptive-opset23.onnx" --opset 23 --hf-dir "$O/hf" &&
     bfexport -q deploy $C --repo "$O/repo")
}
export_all "$WORK/old" "$WORK/out-old"
export_all "$PWD" "$WORK/out-new"
python - "$WORK/out-old" "$WORK/out-new" <<'PY'
import filecmp, json, sys
from pathlib import Path
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

old, new = map(Path, sys.argv[1:])
bad = 0
for a in sorted(old.rglob("*")):
    b = new / a.relative_to(old)
    if a.is_dir():
        continue
    if a.name == "config.pbtxt":
        same = text_format.Parse(a.read_text(), pb.ModelConfig()) == text_format.Parse(b.read_text(), pb.ModelConfig())
    elif a.name == "bfexport.json":
        ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        same = {k: v for k, v in ja.items() if k != "created"} == {k: v for k, v in jb.items() if k != "created"}
    else:
        same = filecmp.cmp(a, b, shallow=False)
    bad += not same
    print(("same " if same else "DIFF ") + str(a.relative_to(old)))
sys.exit(1 if bad else 0)
PY
