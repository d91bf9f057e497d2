#!/usr/bin/env bash
# Fails when a library folder includes a header of a higher layer (../shared/ARCHITECTURE.md):
#   core, config <- parallel <- optim, data <- models <- io <- train <- rlhf <- launch
# data/ depends on core/ only; config/ on core/ only. Tests, benchmarks and examples are exempt.
# Prints every violation as file:line and exits 1 if there is any. Usage: scripts/check-layers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Folders each folder may include (besides itself).
declare -A allowed=(
  [core]=""
  [config]="core"
  [parallel]="core config"
  [optim]="core config parallel"
  [data]="core"
  [models]="core config parallel optim data"
  [io]="core config parallel optim data models"
  [train]="core config parallel optim data models io"
  [rlhf]="core config parallel optim data models io train"
  [launch]="core config parallel optim data models io train rlhf"
)
folders="${!allowed[*]}"
bad=0
for from in $folders; do
  [ -d "$from" ] || continue
  for to in $folders; do
    [ "$to" = "$from" ] && continue
    case " ${allowed[$from]} " in *" $to "*) continue ;; esac
    hits=$(grep -rnE "^#include \"$to/" "$from" --include='*.h' --include='*.cpp' \
             --include='*.cu' --include='*.cuh' || true)
    if [ -n "$hits" ]; then
      echo "check-layers: $from/ must not include $to/:"
      echo "$hits" | sed 's/^/  /'
      bad=1
    fi
  done
done
if [ "$bad" -ne 0 ]; then
  echo "check-layers: FAILED (see ../shared/ARCHITECTURE.md for the layer map)"
  exit 1
fi
echo "check-layers: every include points down the layer map"
