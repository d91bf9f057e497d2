#!/usr/bin/env bash
# Reliability drills (issue 15): bad inputs and faults tried against the real `loom` binary as a
# user would (configs, --set, data files, tokenizers, checkpoints, safetensors, kill -9 during
# training and saves, SIGTERM, dead and frozen ranks, a full disk, NaN, bench limits, --help).
# Prints one JSON line per drill and a summary line; exit status 1 if any drill is not ok.
# Usage: scripts/drills.sh [--only ID_REGEX] [--keep DIR]     (binary: $LOOM, default build/bin/loom)
# The drills and their verdicts are described in docs/TESTING.md ("Drills").
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ONLY="" KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "drills: unknown argument $1" >&2; exit 2 ;;
  esac
done
LOOM=${LOOM:-$root/build/bin/loom}
[ -x "$LOOM" ] || { echo "drills: no loom binary at $LOOM (set LOOM)" >&2; exit 2; }
LOOM=$(cd "$(dirname "$LOOM")" && pwd)/$(basename "$LOOM")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
if [ -n "$KEEP" ]; then
  rm -rf "$KEEP" && mkdir -p "$KEEP" && W=$(cd "$KEEP" && pwd)
else
  W=$(mktemp -d /tmp/loom-drills.XXXXXX)
fi
MOUNTS=""
cleanup() {
  local m
  for m in $MOUNTS; do umount "$m" 2>/dev/null; done
  [ -n "$KEEP" ] || rm -rf "$W"
}
trap cleanup EXIT

for f in common config data tokenizer checkpoint safetensors faults cli; do
  # shellcheck source=/dev/null
  . "$root/scripts/drills/$f.sh"
done

start=$SECONDS
echo "drills: work dir $W, binary $LOOM" >&2
fixtures || { echo "drills: could not make the fixtures (tokenizer, data, base run)" >&2; exit 2; }
drills_help
drills_config
drills_data
drills_tokenizer
drills_checkpoint
drills_safetensors
drills_faults
drills_cli
summary
echo "drills: $((SECONDS - start)) s" >&2
[ "$N_OK" = "$N_RUN" ]
