#!/usr/bin/env bash
# The test command: installs missing Debian packages, configures (CUDA sources included whenever nvcc
# exists), builds everything into build/, and runs the whole CTest suite (unit, multi-rank, and GPU
# tests, which skip visibly without a GPU). Usage: scripts/test.sh [extra ctest args, e.g. -L unit]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/install-deps.sh"
"$root/scripts/check-layers.sh"  # includes point down ../shared/ARCHITECTURE.md's layer map
jobs=${LOOM_BUILD_JOBS:-$(nproc)}
cmake --preset release
cmake --build --preset release -j "$jobs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --preset release -j "$jobs" "$@"
