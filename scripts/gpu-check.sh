#!/usr/bin/env bash
# Every GPU check of the CUDA issue on a machine with an NVIDIA GPU, in one command: builds (CUDA
# sources included), runs the GPU test label (kernels vs CPU references, fp32 GPU-vs-CPU training,
# bf16 autocast, the Trainer in bf16 with and without loss scaling, NCCL on one GPU; the whole
# suite runs, so the CUDA cases in the model and optimizer tests too), then the
# training benchmarks the issue's targets are stated in. Prints the tests' verdict and one JSON line
# per benchmark (tokens/s, MFU, peak device memory); record them in docs/PERFORMANCE.md with the
# date and the GPU. Usage: scripts/gpu-check.sh [extra ctest args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$root/scripts/install-deps.sh"
jobs=${LOOM_BUILD_JOBS:-$(nproc)}
cmake --preset release
cmake --build --preset release -j "$jobs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The whole suite: the gpu label plus the CUDA cases of the model and optimizer tests. On a GPU
# machine nothing may skip: a skip means the GPU was not found, and that is a failure here.
ctest --preset release -j "$jobs" --output-on-failure "$@" | tee /tmp/loom-gpu-tests.log
if grep -q "(Skipped)" /tmp/loom-gpu-tests.log; then
  echo "gpu-check: GPU tests were skipped: no usable CUDA device" >&2
  exit 1
fi
for model in gpt2-124m gpt2-350m; do
  build/bin/loom bench --device cuda --model "$model" --batch 16 --seq 1024 --steps 10 \
    --warmup 3 --dtype bf16
done
build/bin/loom bench --device cuda --model gpt2-774m --batch 8 --seq 1024 --steps 5 --warmup 2 \
  --dtype bf16
