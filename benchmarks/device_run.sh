#!/usr/bin/env bash
# One call on a lent CUDA machine (the `device` tool): the speed benchmark and every notebook in the gpu preset.
# Prepare here:  ../shared/tools/offline-wheels.sh wheels && echo wheels/ >> .git/info/exclude
# Then run:      benchmarks/device_run.sh            (with `wheels` in the device tool's carry list)
# Results (doctor, speed, notebook log, executed notebooks, timing table) land in $OUT (or results-device/).
# PRESET=quick benchmarks/device_run.sh tries the same steps on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results-device}; PRESET=${PRESET:-gpu}; mkdir -p "$OUT"
if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site wheels/*.whl
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
fi
PY=${PY:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TLTEACH_CACHE=${TLTEACH_CACHE:-/tmp/tlteach-cache}
$PY -m tlteach doctor | tee "$OUT/doctor.txt" || true
$PY benchmarks/train_speed.py --preset "$PRESET" --steps 100 | tee "$OUT/speed.txt"
$PY benchmarks/train_speed.py --preset "$PRESET" --steps 100 --compile | tee -a "$OUT/speed.txt" || true
start=$(date +%s)
$PY scripts/run_notebooks.py --preset "$PRESET" 2>&1 | grep -v "over TCP without encryption" | tee "$OUT/notebooks.txt"
echo "all notebooks: $(( $(date +%s) - start )) s" | tee -a "$OUT/notebooks.txt"
cp notebooks/[0-9][0-9]-*.ipynb benchmarks/notebook_times.csv "$OUT/"
