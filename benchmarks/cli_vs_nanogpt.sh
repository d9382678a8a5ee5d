#!/usr/bin/env bash
# `python -m tlteach pretrain` against nanoGPT's own train.py on nanoGPT's CPU recipe for shakespeare_char
# (README: char tokenizer, 4 layers x 4 heads x 128 embd, block 64, batch 12, dropout 0, bias false, eval_iters 20,
# eval_interval 250, lr 1e-3 -> 1e-4, warmup 100, lr_decay_iters = max_iters), run one after the other, never at
# once: the whole process's wall time of each run, start-up and evaluations included, the medians and the ratio.
# Both write a checkpoint (nanoGPT's ckpt.pt when val improves; ours with --out) into a temporary folder.
#
# Usage: NANOGPT=/path/to/nanoGPT benchmarks/cli_vs_nanogpt.sh [PAIRS]      (default 2 pairs)
#   ITERS=1000 (default)  PY=.venv/bin/python  TEXT=../shared/data/tinyshakespeare.txt  LOGS=folder to keep logs in
# Thread settings (OMP_NUM_THREADS...) are left as they are, the same for both. The pairs alternate which runs
# first. A run shares the machine with nothing else only if you make it so: the load average is printed beside
# each time. The result of a run here is kept in benchmarks/results/cli_vs_nanogpt.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
TEXT=$(realpath "${TEXT:-$ROOT/../shared/data/tinyshakespeare.txt}")
ITERS=${ITERS:-1000}
PAIRS=${1:-2}

if [ -z "${NANOGPT:-}" ] || [ ! -f "${NANOGPT}/train.py" ]; then
  cat >&2 <<EOF
error: set NANOGPT to a checkout of nanoGPT (github.com/karpathy/nanoGPT), e.g.
  git clone https://github.com/karpathy/nanoGPT /tmp/nanogpt
  NANOGPT=/tmp/nanogpt $0 ${PAIRS}
Its data/shakespeare_char is prepared from ${TEXT} on the first run (its prepare.py needs numpy and requests).
EOF
  exit 2
fi
NANOGPT=$(cd "$NANOGPT" && pwd)
CHAR=$NANOGPT/data/shakespeare_char
if [ ! -f "$CHAR/train.bin" ] || [ ! -f "$CHAR/val.bin" ] || [ ! -f "$CHAR/meta.pkl" ]; then
  [ -f "$CHAR/input.txt" ] || cp "$TEXT" "$CHAR/input.txt"  # so that prepare.py downloads nothing
  (cd "$CHAR" && "$PY" prepare.py >/dev/null)
fi
if ! cmp -s "$TEXT" "$CHAR/input.txt"; then
  echo "error: $CHAR/input.txt differs from $TEXT; the two would not train on the same text" >&2
  exit 2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOGS=${LOGS:-$WORK}
mkdir -p "$LOGS"

nanogpt() {  # nanoGPT's README command for a CPU, with max_iters and lr_decay_iters set to ITERS
  (cd "$NANOGPT" && "$PY" train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 \
    --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters="$ITERS" \
    --lr_decay_iters="$ITERS" --dropout=0.0 --out_dir="$WORK/nanogpt-out")
}
ours() {  # the same recipe with nanoGPT's flag names (benchmarks/nanogpt_char.sh, at ITERS iterations)
  "$PY" -m tlteach pretrain --text "$TEXT" --tokenizer char --bias false \
    --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12 --dropout 0 \
    --max-iters "$ITERS" --lr-decay-iters "$ITERS" --warmup-iters 100 --learning-rate 1e-3 --min-lr 1e-4 \
    --beta2 0.99 --weight-decay 0.1 --grad-clip 1.0 --eval-interval 250 --eval-iters 20 \
    --device cpu --seed 1337 --out "$WORK/ours-out"
}
timed() {  # timed NAME LOG: run NAME, print its wall time in seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$1" >"$2" 2>&1 || { echo "error: $1 failed; its log:" >&2; tail -20 "$2" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
final_val() { grep -E "^step [0-9]+: train loss" "$1" | tail -1 | sed -E 's/.*val loss ([0-9.]+).*/\1/'; }

echo "# benchmarks/cli_vs_nanogpt.sh: ${PAIRS} pairs, ${ITERS} iterations, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# $(nproc) cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')); $("$PY" -c 'import platform, torch; print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads")'); OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
echo "# nanoGPT $(git -C "$NANOGPT" rev-parse --short HEAD 2>/dev/null || echo '(not a git checkout)'): $NANOGPT"
nano_times=() our_times=()
for pair in $(seq 1 "$PAIRS"); do
  order=(nanogpt ours)
  [ $((pair % 2)) -eq 0 ] && order=(ours nanogpt)
  for who in "${order[@]}"; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    rm -rf "$WORK/nanogpt-out" "$WORK/ours-out"
    log=$LOGS/$who-$pair.log
    t=$(timed "$who" "$log")
    if [ "$who" = nanogpt ]; then nano_times+=("$t"); else our_times+=("$t"); fi
    printf '%-8s pair %d: %6.1f s  (load before %s; final val loss %s)\n' "$who" "$pair" "$t" "$load" "$(final_val "$log")"
  done
done
nano_med=$(printf '%s\n' "${nano_times[@]}" | median)
our_med=$(printf '%s\n' "${our_times[@]}" | median)
echo "nanoGPT median: ${nano_med} s  (${nano_times[*]})"
echo "ours    median: ${our_med} s  (${our_times[*]})"
awk -v o="$our_med" -v n="$nano_med" 'BEGIN { printf "ratio ours/nanoGPT: %.2f\n", o / n }'
