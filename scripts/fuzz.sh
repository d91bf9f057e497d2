#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz (TESTPLAN U13), building them first with the `fuzz`
# preset (clang, ASan + UBSan) into build-fuzz/.
#   scripts/fuzz.sh --short              # CI: every harness over its corpus + a fixed-seed
#                                        # mutation run, about a minute in all
#   scripts/fuzz.sh --long 600 [NAME..]  # by hand: each harness (or the named ones) 600 s, one
#                                        # at a time, nice'd
# Inputs found during a run go to a scratch directory, never into the checked-in corpus; a crash,
# sanitizer report, hang (-timeout) or excess memory fails the run, and the input is kept under
# build-fuzz/artifacts/<name>/ (copy it into tests/fuzz/corpus/<name>/ with the fix, as a
# regression input). Exit status: 0 when every harness ran clean.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESSES=(config_text config_set jsonl tokenizer safetensors manifest token_dataset)

mode="" seconds=0
case "${1:-}" in
  --short) mode=short; seconds=8; shift ;;
  --long) mode=long; seconds="${2:?--long needs SECONDS}"; shift 2 ;;
  *) echo "usage: $0 --short | --long SECONDS [HARNESS...]" >&2; exit 2 ;;
esac
if [ $# -gt 0 ]; then HARNESSES=("$@"); fi

build="$root/build-fuzz"
if [ ! -f "$build/CMakeCache.txt" ]; then
  (cd "$root" && cmake --preset fuzz >/dev/null)
fi
targets=()
for h in "${HARNESSES[@]}"; do targets+=("fuzz_$h"); done
nice -n 10 cmake --build "$build" -j"${LOOM_FUZZ_JOBS:-2}" --target "${targets[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for h in "${HARNESSES[@]}"; do
  corpus="$root/tests/fuzz/corpus/$h"
  artifacts="$build/artifacts/$h"
  mkdir -p "$scratch/$h" "$artifacts" "$corpus"
  args=(-timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
        -artifact_prefix="$artifacts/" -max_total_time="$seconds")
  # Short runs are reproducible: a fixed seed and a bounded number of mutations.
  if [ "$mode" = short ]; then args+=(-seed=1 -runs=40000); fi
  log="$scratch/$h.log"
  start=$(date +%s)
  if nice -n 10 "$build/bin/fuzz_$h" "${args[@]}" "$scratch/$h" "$corpus" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$h")
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz $h: $status, $execs execs in $(( $(date +%s) - start )) s"
  if [ "$status" = FAILED ]; then
    grep -E "ERROR|SUMMARY|uncaught|Test unit written|runtime error" "$log" | head -20 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} harness(es) failed: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#HARNESSES[@]} harness(es) clean"
