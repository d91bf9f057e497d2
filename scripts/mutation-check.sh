#!/usr/bin/env bash
# Mutation check (issue 15): applies each one-line mutation of tests/mutations.txt to the source
# tree, builds only the test targets it names (cpu-only preset, build-cpu/), runs the CTest cases
# it names, restores the file byte for byte (also on error, Ctrl-C or kill: a trap), and prints
# one JSON line per mutation, then a JSON summary. A mutation is "caught" when a named test fails,
# "survived" when they all pass; exit status 1 if any survived or could not be checked.
# Usage: scripts/mutation-check.sh [--list FILE] [--only ID_REGEX] [--jobs N] [--no-baseline]
# First the named tests run unmutated (the baseline); a failing baseline stops the check.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

list=tests/mutations.txt only=. jobs=2 baseline=1 build=build-cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --no-baseline) baseline=0; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "mutation-check: unknown argument $1" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# NB: no ccache. With CCACHE_BASEDIR shared between worktrees, ccache once returned another
# worktree's PpoStage.cpp.o for this one's; a wrong object would make a mutation's verdict wrong.
# Each mutation recompiles one file twice (mutated, restored), which ccache saves little of.
export CCACHE_DISABLE=1
[ -f "$build/CMakeCache.txt" ] || cmake --preset cpu-only >/dev/null || exit 2

scratch=$(mktemp -d)
backup="" target_file="" child=""
# Builds and tests run as a waited-for child, so that on a signal the trap stops them before the
# file is restored (a build still running afterwards could leave a mutated object that looks newer
# than the restored source).
set -m  # each child in its own process group, which stop_child ends as a whole (cmake's ninja too)
run_child() {
  "$@" &
  child=$!
  wait "$child"
  local rc=$?
  child=""
  return $rc
}
stop_child() {
  if [ -n "$child" ]; then kill -TERM -- "-$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
}
restore() {
  # NB: a plain cp gives the restored file a new mtime, so the next build recompiles it (cp -p
  # would leave the mutated objects in build-cpu/ looking up to date).
  if [ -n "$backup" ] && [ -n "$target_file" ]; then cp "$backup" "$target_file"; fi
  backup="" target_file=""
}
trap 'restore; rm -rf "$scratch"' EXIT
trap 'stop_child; restore; echo "mutation-check: interrupted; tree restored" >&2; exit 130' INT TERM HUP

# Fields of a list line (tab-separated): id, file, original text, replacement, build targets
# (comma-separated), CTest regex. Lines starting with # and blank lines are skipped.
entries() { grep -v '^[[:space:]]*\(#\|$\)' "$list"; }

build_targets() {  # comma-separated targets; output in $scratch/build.log
  local t args=()
  IFS=',' read -ra t <<<"$1"
  for x in "${t[@]}"; do args+=(--target "$x"); done
  run_child nice -n 10 cmake --build "$build" -j "$jobs" "${args[@]}" </dev/null \
    >"$scratch/build.log" 2>&1
}

run_tests() {  # CTest regex; prints the failed test names; status 0 if all passed, 3 if none ran
  local log="$scratch/ctest.log"
  run_child nice -n 10 ctest --test-dir "$build" -R "$1" --timeout 600 </dev/null >"$log" 2>&1
  local rc=$?
  if grep -q "No tests were found" "$log"; then return 3; fi
  # The names listed under "The following tests FAILED:" (skipped tests are listed elsewhere).
  sed -n '/The following tests FAILED:/,$p' "$log" | grep -E '^[[:space:]]+[0-9]+ - ' |
    sed -E 's/^[[:space:]]+[0-9]+ - ([^ ]+).*/\1/'
  return $rc
}

json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

if [ "$baseline" = 1 ]; then
  all_targets=$(entries | awk -F'\t' -v o="$only" '$1 ~ o {print $5}' | tr ',' '\n' | sort -u |
                paste -sd, -)
  all_tests=$(entries | awk -F'\t' -v o="$only" '$1 ~ o {print $6}' | sort -u | paste -sd'|' -)
  if ! build_targets "$all_targets"; then
    cat "$scratch/build.log" >&2; echo "mutation-check: baseline build failed" >&2; exit 2
  fi
  if ! failed=$(run_tests "$all_tests"); then
    echo "mutation-check: baseline tests fail unmutated: $failed" >&2; exit 2
  fi
fi

start=$(date +%s) caught=0 survived=0 errors=0 survivors=""
while IFS=$'\t' read -r -u 3 id file from to targets regex; do
  [[ "$id" =~ $only ]] || continue
  t0=$(date +%s) status="" failed=""
  target_file=$file backup=$scratch/original
  cp "$file" "$backup"
  if ! python3 - "$file" "$from" "$to" <<'EOF'
import sys
path, old, new = sys.argv[1:4]
text = open(path, encoding="utf-8").read()
if text.count(old) != 1:
    sys.exit(f"expected the original text once in {path}, found it {text.count(old)} times")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
  then
    status=not_applicable
  elif ! build_targets "$targets"; then
    status=build_failed
  else
    failed=$(run_tests "$regex")
    case $? in
      0) status=survived ;;
      3) status=no_tests ;;
      *) status=caught ;;
    esac
  fi
  restore
  case $status in
    caught) caught=$((caught + 1)) ;;
    survived) survived=$((survived + 1)); survivors="$survivors $id" ;;
    *) errors=$((errors + 1)); survivors="$survivors $id($status)" ;;
  esac
  echo "{\"id\": $(json_str "$id"), \"file\": $(json_str "$file"), \"status\": \"$status\"," \
       "\"tests\": $(json_str "$regex"), \"failed\": $(json_str "$(echo $failed)")," \
       "\"seconds\": $(( $(date +%s) - t0 ))}"
done 3< <(entries)

echo "{\"summary\": true, \"caught\": $caught, \"survived\": $survived, \"errors\": $errors," \
     "\"not_caught\": $(json_str "${survivors# }"), \"seconds\": $(( $(date +%s) - start ))}"
[ "$survived" = 0 ] && [ "$errors" = 0 ]
