#!/usr/bin/env bash
# One GPU training run on a lent device machine (see weights/MODEL_CARD.md): two recipes side by
# side on the packed corpus for $T seconds, both warm-started from the shipped decoder with its
# grid penalty, scale jitter, mirror crops and pipeline mirror term at 256² crops, each shipping the
# moving average of its weights (EMA 0.999 with warm-up) and scored with the committed style scales
# (so the numbers compare with the card's); pick the one with the lower held-out loss, export it,
# and check the Stylizer on CUDA with it. Everything worth keeping is written to $OUT.
#   .venv/bin/python -m training.corpus --pack data --out data/gpu --side 320   # 48 MB: fits the carry
#   OUT=/tmp/out T=20 EVAL=2 EXTRA="--device cpu" bash scripts/device_train.sh   # local dry run
set -uo pipefail
PY=${PY:-python3}; T=${T:-400}; EVAL=${EVAL:-16}; EXTRA=${EXTRA:-}; DATA=${DATA:-data/gpu}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=15
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
COMMON="--content-dir $DATA/content --style-dir $DATA/style --val-content-dir $DATA/val/content
  --val-style-dir $DATA/val/style --image-size 320 --crop-size 256 --preload --max-iter 1000000
  --init weights/decoder.safetensors --grid-weight 1 --scale-jitter 0.5 --mirror-crops --flip-weight 300
  --ema-decay 0.999 --style-scales weights/heldout_style_scales.safetensors
  --time-limit $T --eval-every 1000 --save-every 5000 --eval-contents $EVAL --eval-styles $EVAL
  --log-every 100 --grid-every 100000000 --seed 0 $EXTRA"
$PY -m training.train $COMMON --out runs/a --batch-size 8 --lr 2e-5 > "$OUT/a.log" 2>&1 &
$PY -m training.train $COMMON --out runs/b --batch-size 16 --lr 5e-5 --warmup-steps 500 > "$OUT/b.log" 2>&1 &
wait
tail -n 3 "$OUT/a.log" "$OUT/b.log"
cp runs/a/eval.jsonl "$OUT/a_eval.jsonl"; cp runs/b/eval.jsonl "$OUT/b_eval.jsonl"
best=$($PY - <<'PY'
import json
def final(run):
    last = json.loads(open(f"runs/{run}/eval.jsonl").read().splitlines()[-1])
    return last["content"] + 10 * last["style"], last
scores = {r: final(r) for r in ("a", "b")}
for r, (s, last) in scores.items():
    print(f"recipe {r}: step {last['step']} held-out content {last['content']:.3f} style {last['style']:.3f} total {s:.3f}", file=__import__("sys").stderr)
print(min(scores, key=lambda r: scores[r][0]))
PY
)
echo "best recipe: $best"
$PY -m training.export --checkpoint "runs/$best/checkpoint.pt" --out "$OUT/weights"
mv "$OUT/weights/decoder.safetensors" "$OUT/decoder.safetensors"; rm -rf "$OUT/weights"
cp "$(ls runs/$best/eval_*.png | tail -n 1)" "$OUT/eval_grid.png"
$PY bench/perf.py --decoder "$OUT/decoder.safetensors" --device cuda --no-http 2>&1 | tee "$OUT/perf.txt"
