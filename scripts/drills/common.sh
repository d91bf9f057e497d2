# shellcheck shell=bash
# Drill runner helpers, sourced by scripts/drills.sh: `d` runs one drill (a command under
# `timeout`) and prints its JSON verdict line; `skip` records a drill that could not run; `sel`
# says whether an id matches --only; fixtures() makes the tiny tokenizer, data, config and run
# that the drills start from (all with the real loom binary). Needs $LOOM, $W (work dir), $ONLY.
# Verdicts: ok, CRASH (signal we did not send, crash text), HANG (timeout), SILENT (bad input
# accepted, or a post-check found a wrong result), WRONG_CODE (exit code of the wrong class),
# NO_NAME (the `loom: error:` text does not name the culprit, or library text leaks).

CRASH_RE='terminate called|Segmentation fault|AddressSanitizer|UndefinedBehaviorSanitizer|core dumped|stack smashing|double free|free\(\): invalid|Aborted|SIGSEGV|SIGABRT'
LEAK_RE='json\.exception|\bstoll\b|\bstoi\b|\bstod\b|\bstoul\b|bad_alloc|basic_string|what\(\)|vector::_M|std::length_error|std::out_of_range|std::invalid_argument|bad_optional_access|bad_variant_access'
declare -A CAT_RUN CAT_OK CAT_SKIP
N_RUN=0 N_OK=0 N_SKIP=0 NOT_OK="" SKIPPED=""

sel() { [[ -z "$ONLY" || "$1" =~ $ONLY ]]; }

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=$(printf '%s' "$s" | tr '\000-\037' ' ' | cut -c1-300)
  printf '"%s"' "$s"
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# The error text of a log: from the first "loom: error:" line to the end.
error_text() { sed -n '/loom: error:/,$p' "$1"; }

# d ID CATEGORY EXPECTED NAME CMD...
#   EXPECTED: exit code regex (e.g. 2, 1|2, nz = any nonzero). NAME: a fixed string the error
#   text must contain ("" = none). Optional variables for one call: D_T (timeout s, default 60),
#   D_CWD (working dir, default $W), D_POST (a function run when the exit code was right: status
#   0 = ok, else its stdout says what is wrong: SILENT), D_SIGOK=1 (rc >= 128 is ours: drills
#   that send signals), D_NOERR=1 (a nonzero exit needs no `loom: error:` line: stopped runs).
d() {
  local id=$1 cat=$2 exp=$3 name=$4
  shift 4
  sel "$id" || return 0
  local log=$W/log/${id//[^A-Za-z0-9._=-]/_}.log t=${D_T:-60} t0 rc status=ok detail=""
  t0=$(now_ms)
  (cd "${D_CWD:-$W}" && exec timeout -k 5 "$t" "$@") >"$log" 2>&1
  rc=$?
  local secs=$((($(now_ms) - t0) / 100))
  secs="$((secs / 10)).$((secs % 10))"
  local expre=$exp
  [ "$exp" = nz ] && expre='[1-9][0-9]*'
  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "${secs%.*}" -ge "$t" ]; }; then
    status=HANG detail="no exit within ${t} s"
  elif grep -qE "$CRASH_RE" "$log"; then
    status=CRASH detail=$(grep -m1 -E "$CRASH_RE" "$log")
  elif [ "$rc" -ge 128 ] && [ -z "${D_SIGOK:-}" ]; then
    status=CRASH detail="killed by signal $((rc - 128))"
  elif [[ "$rc" =~ ^($expre)$ ]]; then
    if [ "$rc" != 0 ]; then
      local et
      et=$(error_text "$log")
      if [ -z "$et" ] && [ -z "${D_NOERR:-}" ]; then
        status=NO_NAME detail="no 'loom: error:' line"
      elif grep -qE "$LEAK_RE" <<<"$et"; then
        status=NO_NAME detail="library text: $(grep -m1 -oE "$LEAK_RE" <<<"$et")"
      elif [ -n "$name" ] && ! grep -qF -- "$name" <<<"$et"; then
        status=NO_NAME detail="error does not name '$name': $(head -c 200 <<<"$et")"
      fi
    fi
    if [ "$status" = ok ] && [ -n "${D_POST:-}" ]; then
      detail=$("$D_POST" "$id" "$log" 2>&1) || status=SILENT
    fi
  elif [ "$rc" = 0 ]; then
    status=SILENT detail="accepted with exit 0"
  else
    status=WRONG_CODE detail=$(grep -m1 'loom: error:' "$log" || tail -n1 "$log")
  fi
  [ "$status" = ok ] && detail=""
  N_RUN=$((N_RUN + 1))
  CAT_RUN[$cat]=$((${CAT_RUN[$cat]:-0} + 1))
  if [ "$status" = ok ]; then
    N_OK=$((N_OK + 1))
    CAT_OK[$cat]=$((${CAT_OK[$cat]:-0} + 1))
  else
    NOT_OK="$NOT_OK $id"
  fi
  printf '{"id": %s, "category": "%s", "status": "%s", "rc": %s, "expected": "%s", "seconds": %s' \
    "$(json_str "$id")" "$cat" "$status" "$rc" "$exp" "$secs"
  [ -n "$detail" ] && printf ', "detail": %s' "$(json_str "$detail")"
  printf '}\n'
}

# skip ID CATEGORY REASON
skip() {
  sel "$1" || return 0
  N_SKIP=$((N_SKIP + 1))
  CAT_SKIP[$2]=$((${CAT_SKIP[$2]:-0} + 1))
  SKIPPED="$SKIPPED $1"
  printf '{"id": %s, "category": "%s", "status": "SKIPPED", "reason": %s}\n' "$(json_str "$1")" \
    "$2" "$(json_str "$3")"
}

summary() {
  local c cats=""
  for c in "${!CAT_RUN[@]}" "${!CAT_SKIP[@]}"; do cats="$cats $c"; done
  cats=$(tr ' ' '\n' <<<"$cats" | sort -u | grep .)
  printf '{"summary": true, "run": %d, "ok": %d, "not_ok": %d, "skipped": %d, "categories": {' \
    "$N_RUN" "$N_OK" "$((N_RUN - N_OK))" "$N_SKIP"
  local first=1
  for c in $cats; do
    [ $first = 1 ] || printf ', '
    first=0
    printf '"%s": [%d, %d, %d]' "$c" "${CAT_RUN[$c]:-0}" "${CAT_OK[$c]:-0}" "${CAT_SKIP[$c]:-0}"
  done
  printf '}, "failed": %s, "skipped_ids": %s}\n' "$(json_str "${NOT_OK# }")" \
    "$(json_str "${SKIPPED# }")"
}

# The metrics.jsonl records without the timing fields, for bitwise comparison of two runs.
metrics_core() { sed -E 's/, "(tokens_per_s|step_ms)": [^,}]*//g' "$1"; }

# fixtures: corpus, tokenizer, token data, the base config and a base run with checkpoints at
# steps 2, 4, 6, 8; an HF export of its last checkpoint.
fixtures() {
  mkdir -p "$W/log" "$W/o"
  local i
  for i in $(seq 1 300); do
    echo "The quick brown fox $i jumps over the lazy dog number $((i * 7)). A tiny story about cats, dogs and birds that sing in the morning light."
  done >"$W/corpus.txt"
  sed 's/.*/{"text": "&"}/' "$W/corpus.txt" >"$W/docs.jsonl"
  "$LOOM" tokenizer train --input "$W/corpus.txt" --vocab-size 300 --output "$W/tok" >/dev/null &&
    "$LOOM" preprocess --input "$W/docs.jsonl" --output "$W/data/train.h5" --val-fraction 0.1 \
      --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt" >/dev/null || return 1
  base_config "$W/run" 8 >"$W/base.pbtxt"
  "$LOOM" train "$W/base.pbtxt" >/dev/null && [ -f "$W/run/checkpoints/step_00000008/MANIFEST.json" ] &&
    "$LOOM" convert --from loom "$W/run/checkpoints" --to hf "$W/hf" >/dev/null
}

# base_config OUTPUT_DIR MAX_STEPS [CHECKPOINT_INTERVAL] [N_LAYER N_EMBD]: the tiny 2-layer,
# 32-wide model on the fixture data.
base_config() {
  cat <<EOF
name: "drill"
max_steps: $2
output_dir: "$1"
model { n_layer: ${4:-2} n_head: 4 n_embd: ${5:-32} vocab_size: 300 block_size: 16 dropout: 0.0 }
data { train_path: "$W/data/train.h5" val_path: "$W/data/train.val.h5" seq_len: 16
       tokenizer_vocab: "$W/tok/vocab.json" tokenizer_merges: "$W/tok/merges.txt" }
optimizer { lr: 3e-3 }
schedule { warmup_steps: 2 decay_steps: $2 }
batch { micro_batch_size: 2 global_batch_size: 4 }
eval { interval: 4 steps: 2 }
checkpoint { interval: ${3:-2} keep_last: 0 }
logging { interval: 1 progress: OFF }
EOF
}

# A fresh copy of the base run's checkpoint root at $W/o/NAME; prints the copy's path.
ckpt_copy() {
  rm -rf "$W/o/$1"
  mkdir -p "$W/o/$1"
  cp -r "$W/run/checkpoints" "$W/o/$1/"
  echo "$W/o/$1/checkpoints"
}
