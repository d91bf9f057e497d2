#!/usr/bin/env bash
# Loom vs PyTorch on the same CPU training step (GPT-2, fp32): runs both ROUNDS times, interleaved,
# and prints each JSON line, the median tokens/s of each and the ratio Loom / PyTorch.
# Loom runs through `loom bench` when that verb prints a JSON line, else through the manual driver
# in train_BenchTest (DISABLED_PrintBench). Settings (environment):
#   BUILD=build  MODEL=gpt2-124m  BATCH=4  SEQ=64  STEPS=10  WARMUP=2  THREADS=2  ROUNDS=3
#   LOOM_BLAS=auto        OpenBLAS kernels for Loom ("auto" = detect the CPU; "" = keep
#                         OPENBLAS_CORETYPE from the environment; or a name such as SkylakeX)
#   PT_ADAMW=fused        PyTorch AdamW implementation (fused | foreach | forloop)
#   PT_WAIT=passive       OMP_WAIT_POLICY for PyTorch (passive was fastest on the shared 2 cores)
#   PT_EXTRA=             extra flags for bench/pytorch_train_gpt2.py (e.g. --compile)
#   LOOM_WAIT=passive     OMP_WAIT_POLICY for Loom
#   MAX_LOAD=1.5 WAIT_S=300   wait up to WAIT_S for the 1-minute load average to drop below
#                             MAX_LOAD before each run (other jobs on the machine skew timings)
#   PYTHON=/work/pyenv-golden/bin/python
# Usage: bench/compare_pytorch.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build} MODEL=${MODEL:-gpt2-124m} BATCH=${BATCH:-4} SEQ=${SEQ:-64}
STEPS=${STEPS:-10} WARMUP=${WARMUP:-2} THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3}
LOOM_BLAS=${LOOM_BLAS-auto} PT_ADAMW=${PT_ADAMW:-fused} PT_WAIT=${PT_WAIT:-passive}
LOOM_WAIT=${LOOM_WAIT:-passive} MAX_LOAD=${MAX_LOAD:-1.5} WAIT_S=${WAIT_S:-300}
PYTHON=${PYTHON:-/work/pyenv-golden/bin/python}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

wait_for_quiet() {
  local waited=0
  while awk -v m="$MAX_LOAD" '{exit !($1 >= m)}' /proc/loadavg && [ "$waited" -lt "$WAIT_S" ]; do
    sleep 5
    waited=$((waited + 5))
  done
  echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}

run_loom() {
  local line=""
  if [ -x "$BUILD/bin/loom" ]; then
    line=$(OMP_WAIT_POLICY=$LOOM_WAIT "$BUILD/bin/loom" bench --model "$MODEL" --batch "$BATCH" \
             --seq "$SEQ" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
             ${LOOM_BLAS:+--blas "$LOOM_BLAS"} 2>/dev/null | grep '^{' | tail -1 || true)
  fi
  if [ -z "$line" ]; then
    line=$(OMP_WAIT_POLICY=$LOOM_WAIT LOOM_BENCH_MODEL=$MODEL LOOM_BENCH_BATCH=$BATCH \
           LOOM_BENCH_SEQ=$SEQ LOOM_BENCH_STEPS=$STEPS LOOM_BENCH_WARMUP=$WARMUP \
           LOOM_BENCH_THREADS=$THREADS LOOM_BENCH_BLAS=$LOOM_BLAS \
           "$BUILD/bin/train_BenchTest" --gtest_also_run_disabled_tests \
           --gtest_filter='BenchTest.DISABLED_PrintBench' | sed -n 's/^BENCH_JSON //p')
  fi
  echo "$line"
}

run_pytorch() {
  OMP_WAIT_POLICY=$PT_WAIT "$PYTHON" bench/pytorch_train_gpt2.py --model "$MODEL" \
    --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
    --adamw "$PT_ADAMW" ${PT_EXTRA:-}
}

for r in $(seq 1 "$ROUNDS"); do
  wait_for_quiet
  run_loom | tee -a "$OUT/loom.jsonl"
  wait_for_quiet
  run_pytorch | tee -a "$OUT/pytorch.jsonl"
done

"$PYTHON" - "$OUT/loom.jsonl" "$OUT/pytorch.jsonl" <<'PY'
import json, statistics, sys
def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]
loom, pt = load(sys.argv[1]), load(sys.argv[2])
lt = statistics.median(j["tokens_per_s"] for j in loom)
pt_t = statistics.median(j["tokens_per_s"] for j in pt)
lm = statistics.median(j["ms_per_step_median"] for j in loom)
pm = statistics.median(j["ms_per_step_median"] for j in pt)
print(f"loom    : {lm:8.1f} ms/step  {lt:8.1f} tokens/s  (median of {len(loom)} runs)")
print(f"pytorch : {pm:8.1f} ms/step  {pt_t:8.1f} tokens/s  (median of {len(pt)} runs)")
print(f"ratio loom/pytorch tokens/s: {lt / pt_t:.2f}")
PY
