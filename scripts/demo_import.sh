#!/usr/bin/env bash
# Import demonstration, end to end on what can be made locally (no pretrained weights can be
# downloaded): a small BERT-shaped BertForSequenceClassification fine-tuned densely on the Debian
# data with transformers, saved with save_pretrained, then bfexport import -> train --init (two
# recipes, the better kept) -> convert -> validate -> calibrate, and the table: dense vs
# imported-and-budgetized. Needs the hf extra (transformers). Writes under ${OUT:-demo-out};
# each step's seconds go to $OUT/timings.txt. A re-run reuses a finished fine-tune.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-demo-out}
DATA=examples/debian-sections
EPOCHS=${EPOCHS:-3}
mkdir -p "$OUT"
: > "$OUT/timings.txt"
step() {  # step NAME COMMAND...: run it, note its wall time
    local name=$1 t0=$SECONDS
    shift
    "$@"
    echo "$name $((SECONDS - t0)) s" | tee -a "$OUT/timings.txt" >&2
}

if [ ! -f "$OUT/hf-bert/finetune.json" ]; then
    step finetune python scripts/demo_finetune_bert.py --out "$OUT/hf-bert"
fi
step import bfexport import "$OUT/hf-bert" -o "$OUT/imported" --force

# Two recipes from the same import, side by side (one thread each): the pretrained weights at
# lr/10 throughout, or fixed while exploring and at lr/10 after. Epoch 1 explores, 2.. exploit.
TRAIN=(bfexport train --init "$OUT/imported" --train "$DATA/train.jsonl.gz" --validation "$DATA/validation.jsonl.gz"
       --epochs "$EPOCHS" --explore-frac 0.34 --cost-lambda 0.05 --encoder-lr-scale 0.1 --force --json)
OMP_NUM_THREADS=1 step train-lr10 "${TRAIN[@]}" -o "$OUT/budget-lr10" > "$OUT/train-lr10.json" &
OMP_NUM_THREADS=1 step train-frozen "${TRAIN[@]}" -o "$OUT/budget-frozen" --freeze-encoder-while-exploring \
    > "$OUT/train-frozen.json" &
wait
BEST=$(python -c "import json, sys; r = {n: json.load(open(f'$OUT/train-{n}.json'))['accuracy'] for n in ('lr10', 'frozen')}; print(max(r, key=r.get))")
echo "kept: budget-$BEST (higher validation accuracy)" >&2
CKPT="$OUT/budget-$BEST"

step convert bfexport convert "$OUT/imported" -o "$OUT/dense.onnx" --flavor dense --force
step convert bfexport convert "$CKPT" -o "$OUT/budget.onnx" --force
step validate bfexport validate "$CKPT" "$OUT/budget.onnx" --data "$DATA/test.jsonl.gz" --samples 200
step validate bfexport validate "$OUT/imported" "$OUT/dense.onnx" --data "$DATA/test.jsonl.gz" --samples 200
step calibrate bfexport calibrate "$OUT/budget.onnx" --data "$DATA/validation.jsonl.gz" --samples 1000 \
    --target-flops 0.7 -o "$OUT/calibration.json" --write-model "$OUT/budget-calibrated.onnx" --force
for name in imported budget-lr10 budget-frozen; do
    step inspect bfexport inspect "$OUT/$name" --data "$DATA/test.jsonl.gz" --json > "$OUT/inspect-$name.json"
done
step table python scripts/demo_table.py --out "$OUT" --best "budget-$BEST" --data "$DATA/test.jsonl.gz"
