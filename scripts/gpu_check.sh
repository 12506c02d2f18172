#!/usr/bin/env bash
# The GPU check, in one call: the CNN benchmark (d2lexp vs ceiling vs book-style), then every
# CNN preset of the book for its full 10 epochs with trainer=gpu, and a table of test accuracy,
# fit seconds, examples/s and peak memory per preset (the sweep report).
#
#   scripts/gpu_check.sh [OUT_DIR]            # on a GPU machine (results under OUT_DIR, default $OUT or outputs/gpu_check)
#   scripts/gpu_check.sh --smoke [OUT_DIR]    # anywhere, the CPU included: a few batches per preset, to prove it runs
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
OUT_DIR="${1:-${OUT:-outputs/gpu_check}}"
mkdir -p "$OUT_DIR"
PRESETS="lenet,alexnet,vgg,nin,googlenet,lenet_bn,resnet18,densenet"
export PYTHONUNBUFFERED=1

if (( SMOKE )); then
  BENCH_ARGS=(--cnn-batches 2 --cnn-presets lenet alexnet resnet18)
  RUN_ARGS=(trainer.accelerator=cpu trainer.max_epochs=1 trainer.limit_train_batches=2
            trainer.limit_val_batches=1 trainer.limit_test_batches=1 data.batch_size=16)
  TRAINER=()
else
  BENCH_ARGS=()
  RUN_ARGS=()
  TRAINER=(trainer=gpu)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
fi

echo "== benchmark"
python scripts/benchmark.py cnn "${BENCH_ARGS[@]}" --json "$OUT_DIR/benchmark.json" 2>&1 \
  | grep -v '^[│┃┏┡└]' | tee "$OUT_DIR/benchmark.txt"

echo "== the CNN presets, 10 epochs each"
SECONDS=0
python -m d2lexp -m "experiment=$(sed 's/[^,]*/d2l\/&/g' <<< "$PRESETS")" "${TRAINER[@]}" "${RUN_ARGS[@]}" \
  callbacks.progress_bar=null hydra.sweep.dir="$OUT_DIR/presets" 2>&1 | grep -v '^[│┃┏┡└]' > "$OUT_DIR/presets.log" \
  || echo "some preset failed: see $OUT_DIR/presets.log and the report"
echo "all presets: $SECONDS s of wall time" | tee "$OUT_DIR/presets_time.txt"
python -m d2lexp.report "$OUT_DIR/presets" | tee "$OUT_DIR/presets_report.md"
