#!/usr/bin/env bash
# The GPU check, in one call: every CNN preset of the book for its full 10 epochs with
# trainer=gpu and their table (test accuracy, fit seconds, examples/s, peak memory: the sweep
# report); the peak memory of the largest net (full VGG-11 at 224, batch 128); then the CNN
# benchmark (d2lexp vs ceiling vs book-style). The presets come first: they are the headline.
#
#   scripts/gpu_check.sh [OUT_DIR]                    # on a GPU (results under OUT_DIR, default $OUT or outputs/gpu_check)
#   scripts/gpu_check.sh --bench-batches 100 [OUT_DIR] # benchmark epochs cut to 100 batches (a time-boxed GPU lease)
#   scripts/gpu_check.sh --bench-seconds 1 ...        # or cut to about 1 s each, however fast the net (small nets' epochs are not tiny)
#   scripts/gpu_check.sh --bench-rounds 5 ...         # timed epochs per net in the benchmark (default 3): more, steadier medians
#   scripts/gpu_check.sh --presets densenet,vgg ...   # only these presets for 10 epochs (default: all eight)
#   scripts/gpu_check.sh --presets-override speed.compile=reduce-overhead ... # an override for the 10-epoch presets (repeatable)
#   scripts/gpu_check.sh --bench-presets lenet,vgg ... # only these nets in the benchmark (default: all eight)
#   scripts/gpu_check.sh --profile-steps 20 ...       # the benchmark also profiles 20 steps per net: where the time goes
#   scripts/gpu_check.sh --odd-batch ...             # the benchmark also times a new batch shape's first step, autotuned and on heuristics
#   scripts/gpu_check.sh --lightning-floor ...       # the benchmark also times the ceiling's step in a barebones Lightning Trainer
#   scripts/gpu_check.sh --compile cudagraphs,reduce-overhead ... # then benchmark the launch-bound nets again, once per speed.compile=MODE
#   scripts/gpu_check.sh --compile-presets lenet,densenet ... # which nets --compile benchmarks (default: googlenet,densenet,nin,resnet18,lenet_bn,lenet)
#   scripts/gpu_check.sh --bench-only ...             # only the benchmarks: no 10-epoch presets, no full VGG-11
#   scripts/gpu_check.sh --skip-full-vgg ...          # no full VGG-11 (its peak memory is in the README)
#   scripts/gpu_check.sh --sweep 'experiment=d2l/nin trainer.precision=32-true,bf16-mixed seed=1,2' ...
#                                                     # after the presets, one more sweep (repeatable): its report is sweep_N_report.md
#   scripts/gpu_check.sh --speedrun ...               # last, the speed-run presets' time to 0.94 and 0.95 against fast/vgg_bn_best
#                                                     # (scripts/benchmark.py speedrun, seeds 0-4: about 10 minutes on a GPU)
#   scripts/gpu_check.sh --smoke [OUT_DIR]            # anywhere, the CPU included: a few batches per preset, to prove it runs
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
BENCH_ONLY=0
FULL_VGG=1
BENCH_ARGS=()
PRESETS="lenet,alexnet,vgg,nin,googlenet,lenet_bn,resnet18,densenet"
PRESET_OVERRIDES=()
COMPILE_MODES=()
COMPILE_PRESETS=(googlenet densenet nin resnet18 lenet_bn lenet)  # the nets whose steps are bound by kernel launches, by their share of the chapter
SWEEPS=()
SPEEDRUN=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --bench-batches) BENCH_ARGS+=(--batches "$2"); shift 2 ;;
    --bench-seconds) BENCH_ARGS+=(--epoch-seconds "$2"); shift 2 ;;
    --bench-rounds) BENCH_ARGS+=(--rounds "$2"); shift 2 ;;
    --bench-presets) IFS=, read -r -a NAMES <<< "$2"; BENCH_ARGS+=(--presets "${NAMES[@]}"); shift 2 ;;
    --presets) PRESETS="$2"; shift 2 ;;
    --presets-override) PRESET_OVERRIDES+=("$2"); shift 2 ;;
    --profile-steps) BENCH_ARGS+=(--profile-steps "$2"); shift 2 ;;
    --odd-batch) BENCH_ARGS+=(--odd-batch); shift ;;
    --lightning-floor) BENCH_ARGS+=(--lightning-floor); shift ;;
    --compile) IFS=, read -r -a COMPILE_MODES <<< "$2"; shift 2 ;;
    --compile-presets) IFS=, read -r -a COMPILE_PRESETS <<< "$2"; shift 2 ;;
    --bench-only) BENCH_ONLY=1; shift ;;
    --skip-full-vgg) FULL_VGG=0; shift ;;
    --sweep) SWEEPS+=("$2"); shift 2 ;;
    --speedrun) SPEEDRUN=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
OUT_DIR="${1:-${OUT:-outputs/gpu_check}}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-$(command -v python || command -v python3)}"  # some images have only python3
python() { "$PY" "$@"; }

if (( SMOKE )); then
  BENCH_ARGS=(--batches 2 --rounds 1 --presets lenet alexnet resnet18 --profile-steps 2 --odd-batch --lightning-floor)
  COMPILE_PRESETS=(lenet)  # the quickest to compile
  RUN_ARGS=(trainer.accelerator=cpu trainer.max_epochs=1 trainer.limit_train_batches=2
            trainer.limit_val_batches=1 trainer.limit_test_batches=1 data.batch_size=16)
  BIG_ARGS=(trainer.accelerator=cpu data.batch_size=4 trainer.limit_train_batches=2)
  SPEEDRUN_ARGS=(--seeds 0 --override trainer.accelerator=cpu --override trainer.max_epochs=1
                 --override data.train_subset=256 --override data.test_subset=256)
  TRAINER=()
else
  RUN_ARGS=()
  BIG_ARGS=(data.batch_size=128 trainer.limit_train_batches=30)
  SPEEDRUN_ARGS=(--override trainer=gpu)
  TRAINER=(trainer=gpu)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
fi
QUIET=(callbacks.progress_bar=null)
NO_TABLES='^[│┃┏┡└]'  # Rich's model-summary boxes: long, and the report says it better

# sweep NAME OVERRIDES...: one `python -m d2lexp -m` sweep (trainer=gpu, or the CPU's few batches with
# --smoke; no progress bar), into $OUT_DIR/NAME, its log in $OUT_DIR/NAME.log.
sweep() {
  local name="$1"; shift
  python -m d2lexp -m "${TRAINER[@]}" "${RUN_ARGS[@]}" "${QUIET[@]}" "$@" hydra.sweep.dir="$OUT_DIR/$name" 2>&1 \
    | grep -v "$NO_TABLES" > "$OUT_DIR/$name.log" || echo "some job of $name failed: see $OUT_DIR/$name.log and the report"
}

if (( ! BENCH_ONLY )); then
  echo "== the CNN presets, 10 epochs each"
  SECONDS=0
  sweep presets "experiment=$(sed 's/[^,]*/d2l\/&/g' <<< "$PRESETS")" "${PRESET_OVERRIDES[@]}"
  echo "all presets: $SECONDS s of wall time" | tee "$OUT_DIR/presets_time.txt"
  python -m d2lexp.report "$OUT_DIR/presets" | tee "$OUT_DIR/presets_report.md"
fi

SWEEP_NUMBER=0
for SWEEP in "${SWEEPS[@]}"; do
  SWEEP_NUMBER=$((SWEEP_NUMBER + 1))
  echo "== sweep $SWEEP_NUMBER: $SWEEP"
  read -r -a SWEEP_ARGS <<< "$SWEEP"
  sweep "sweep_$SWEEP_NUMBER" "${SWEEP_ARGS[@]}"
  { echo "sweep $SWEEP_NUMBER: $SWEEP"; python -m d2lexp.report "$OUT_DIR/sweep_$SWEEP_NUMBER"; } \
    | tee "$OUT_DIR/sweep_${SWEEP_NUMBER}_report.md"
done

if (( ! BENCH_ONLY && FULL_VGG )); then
  echo "== the largest net: full VGG-11 at 224"
  python -m d2lexp model=vgg11 "${TRAINER[@]}" "${BIG_ARGS[@]}" trainer.max_epochs=1 trainer.limit_val_batches=2 test=false \
    callbacks.model_checkpoint=null callbacks.last_checkpoint=null "${QUIET[@]}" hydra.run.dir="$OUT_DIR/vgg11_full" 2>&1 \
    | grep -v "$NO_TABLES" | tail -3
  python - "$OUT_DIR/vgg11_full/metrics.json" <<'EOF' | tee "$OUT_DIR/vgg11_full.txt"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"full VGG-11 at 224: status {r['status']}, peak memory "
      f"{r.get('peak_memory_gb') or 0:.1f} GiB, {r.get('train_examples_per_second', 0):,.0f} examples/s")
EOF
fi

echo "== benchmark"
python scripts/benchmark.py cnn "${BENCH_ARGS[@]}" --json "$OUT_DIR/benchmark.json" 2>&1 \
  | grep -v "$NO_TABLES" | tee "$OUT_DIR/benchmark.txt"

for MODE in "${COMPILE_MODES[@]}"; do
  echo "== benchmark with speed.compile=$MODE (compile time is the first_step_seconds, outside the rates)"
  python scripts/benchmark.py cnn "${BENCH_ARGS[@]}" --presets "${COMPILE_PRESETS[@]}" --skip-book-style \
    --override "speed.compile=$MODE" --json "$OUT_DIR/benchmark_compile_$MODE.json" 2>&1 \
    | grep -v "$NO_TABLES" | tee "$OUT_DIR/benchmark_compile_$MODE.txt"
done

if (( SPEEDRUN )); then
  echo "== speed-run presets against fast/vgg_bn_best (time to 0.94 and 0.95)"
  python scripts/benchmark.py speedrun "${SPEEDRUN_ARGS[@]}" --json "$OUT_DIR/speedrun.json" 2>&1 | tee "$OUT_DIR/speedrun.txt"
fi
