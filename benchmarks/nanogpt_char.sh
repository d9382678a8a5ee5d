#!/usr/bin/env bash
# nanoGPT's CPU recipe for shakespeare_char, run with `python -m tlteach pretrain` on the same text.
# nanoGPT's README reports validation loss 1.88 after 2000 iterations for this recipe; on our 2-core
# machine nanoGPT itself runs it at about 33 ms/iteration. Usage: benchmarks/nanogpt_char.sh [SEED...]
# Each run's output goes to benchmarks/results/nanogpt_char_seed<SEED>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TEXT=${TEXT:-../shared/data/tinyshakespeare.txt}
for seed in "${@:-0}"; do
  $PY -m tlteach pretrain --text "$TEXT" --tokenizer char --bias false \
    --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12 --dropout 0 \
    --max-iters 2000 --lr-decay-iters 2000 --warmup-iters 100 --learning-rate 1e-3 --min-lr 1e-4 \
    --beta2 0.99 --weight-decay 0.1 --grad-clip 1.0 --eval-interval 250 --eval-iters 20 \
    --device cpu --seed "$seed" | tee "benchmarks/results/nanogpt_char_seed${seed}.txt"
done
