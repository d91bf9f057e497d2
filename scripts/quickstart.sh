#!/usr/bin/env bash
# The main job on an embedded default: installs what is missing (build dependencies and Debian's
# `fortunes` corpus), builds Loom, and runs examples/pretrain (tokenizer, dataset, a few minutes of
# CPU pretraining with evaluation and checkpoints, then samples). Extra args go to `loom train`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh" fortunes
cmake --preset release
cmake --build --preset release -j "${LOOM_BUILD_JOBS:-$(nproc)}" --target loom
exec "$root/examples/pretrain/run.sh" "$root/out/quickstart" "$@"
