# shellcheck shell=bash
# Command-line drills (sourced by scripts/drills.sh): --help on loom and every command (exit 0 with
# a usage text), unknown commands, out-of-range and malformed flag values of generate, eval,
# convert, bench, plan, launch and pipeline (exit 2 naming the flag), bench limits (bf16 on the
# CPU, more threads than cores under an address-space limit, a model too large for the memory
# limit: exit 5), pipelines with a directory as a stage config, and generate / eval run from
# another working directory (the checkpoint carries its tokenizer).

post_usage() { grep -q 'Usage: loom' "$2" || echo "no usage text"; }

drills_help() {
  local c
  D_POST=post_usage d help-root help 0 "" "$LOOM" --help
  D_POST=post_usage d help-root-h help 0 "" "$LOOM" -h
  d help-version help 0 "" "$LOOM" --version
  for c in train pipeline launch preprocess tokenizer "tokenizer train" "tokenizer encode" \
    "tokenizer decode" generate eval convert bench plan; do
    # shellcheck disable=SC2086
    D_POST=post_usage d "help-${c// /-}" help 0 "" "$LOOM" $c --help
    # shellcheck disable=SC2086
    D_POST=post_usage d "help-${c// /-}-h" help 0 "" "$LOOM" $c -h
  done
  d help-no-command help 2 "" "$LOOM"
  d help-unknown-command help 2 '"fly"' "$LOOM" fly
  d help-tokenizer-no-command help 2 tokenizer "$LOOM" tokenizer
  d help-tokenizer-unknown help 2 '"fly"' "$LOOM" tokenizer fly
}

gen() {  # gen ID EXP NAME ARGS...: loom generate on the base run's last checkpoint
  local id=$1 exp=$2 name=$3
  shift 3
  d "$id" cli "$exp" "$name" "$LOOM" generate --checkpoint "$W/run/checkpoints" \
    --max-new-tokens 4 "$@"
}

drills_generate() {
  gen cli-generate-ok 0 "" --prompt "The quick" --seed 1
  gen cli-generate-max-new-neg 2 --max-new-tokens --prompt hi --max-new-tokens -1
  gen cli-generate-max-new-huge 2 --max-new-tokens --prompt hi --max-new-tokens 2305843009213693952
  gen cli-generate-temp-neg 2 --temperature --prompt hi --temperature -1
  gen cli-generate-temp-nan 2 --temperature --prompt hi --temperature nan
  gen cli-generate-topk-neg 2 --top-k --prompt hi --top-k -1
  gen cli-generate-topp-zero 2 --top-p --prompt hi --top-p 0
  gen cli-generate-topp-big 2 --top-p --prompt hi --top-p 1.5
  gen cli-generate-topp-nan 2 --top-p --prompt hi --top-p nan
  gen cli-generate-samples-zero 2 --num-samples --prompt hi --num-samples 0
  gen cli-generate-samples-huge 2 --num-samples --prompt hi --num-samples 4294967297
  gen cli-generate-ids-wrap 2 --prompt-ids --prompt-ids 4294967297
  gen cli-generate-ids-neg 2 --prompt-ids --prompt-ids 1,-1
  gen cli-generate-ids-vocab 2 "prompt ids" --prompt-ids 1,300
  gen cli-generate-ids-junk 2 --prompt-ids --prompt-ids 1,,x
  gen cli-generate-ids-file-missing '1|2' "$W/o/none.txt" --prompt-ids-file "$W/o/none.txt"
  gen cli-generate-prompts-file-missing '1|2' "$W/o/none.txt" --prompts-file "$W/o/none.txt"
  gen cli-generate-device-bogus 2 --device --prompt hi --device tpu
  gen cli-generate-eos-wrap 2 --eos-id --prompt hi --eos-id 4294967297
  gen cli-generate-prompt-too-long 2 block_size --prompt-ids "$(seq -s, 1 40)"
  d cli-generate-no-checkpoint cli 2 --checkpoint "$LOOM" generate --prompt hi
  d cli-generate-missing-checkpoint cli 3 "$W/o/none" "$LOOM" generate --checkpoint "$W/o/none" --prompt hi
}

drills_eval() {
  local v=$W/data/train.val.h5 c=$W/run/checkpoints
  D_POST=post_eval_json d cli-eval-ok cli 0 "" "$LOOM" eval "$c" --data "$v"
  d cli-eval-seq-zero cli 2 --seq-len "$LOOM" eval "$c" --data "$v" --seq-len 0
  d cli-eval-seq-gt-block cli 2 --seq-len "$LOOM" eval "$c" --data "$v" --seq-len 17
  d cli-eval-seq-huge cli 2 --seq-len "$LOOM" eval "$c" --data "$v" --seq-len 2305843009213693952
  d cli-eval-batch-zero cli 2 --batch "$LOOM" eval "$c" --data "$v" --batch 0
  d cli-eval-max-batches-neg cli 2 --max-batches "$LOOM" eval "$c" --data "$v" --max-batches -1
  d cli-eval-no-data cli 2 --data "$LOOM" eval "$c"
  d cli-eval-data-missing cli '1|2' "$W/o/none.h5" "$LOOM" eval "$c" --data "$W/o/none.h5"
  d cli-eval-hf-missing cli '2|3' "$W/o/nohf" "$LOOM" eval "hf:$W/o/nohf" --data "$v"
  D_POST=post_eval_json d cli-eval-hf-ok cli 0 "" "$LOOM" eval "hf:$W/hf" --data "$v"
}

post_eval_json() { grep -qE '"loss": [0-9]' "$2" || echo "no finite loss in the output"; }

drills_convert_bench() {
  local c=$W/run/checkpoints
  d cli-convert-from-bogus cli 2 --from "$LOOM" convert --from xyz "$c" --to hf "$W/o/cv1"
  d cli-convert-no-to cli 2 --to "$LOOM" convert --from loom "$c"
  d cli-convert-pad-zero cli 2 --vocab-pad-multiple "$LOOM" convert --from hf "$W/hf" --to "$W/o/cv2" \
    --vocab-pad-multiple 0
  d cli-convert-shard-neg cli 2 --max-shard-bytes "$LOOM" convert --from loom "$c" --to hf "$W/o/cv3" \
    --max-shard-bytes -1
  d cli-convert-hf-missing cli '2|3' "$W/o/nohf" "$LOOM" convert --from hf "$W/o/nohf" --to "$W/o/cv4"
  d cli-convert-loom-missing cli 3 "$W/o/nockpt" "$LOOM" convert --from loom "$W/o/nockpt" --to hf "$W/o/cv5"
  d cli-bench-bf16-cpu cli 2 "dtype" "$LOOM" bench --model tiny --seq 16 --dtype bf16 --steps 1 \
    --warmup 0
  d cli-bench-threads-64-ulimit cli 2 --threads bash -c "ulimit -v 4000000; exec '$LOOM' bench \
--model tiny --seq 16 --threads 64 --steps 1 --warmup 0"
  d cli-bench-threads-zero cli 2 --threads "$LOOM" bench --model tiny --seq 16 --threads 0
  d cli-bench-batch-zero cli 2 --batch "$LOOM" bench --model tiny --seq 16 --batch 0
  d cli-bench-seq-huge cli 2 --seq "$LOOM" bench --model tiny --seq 2305843009213693952
  d cli-bench-seq-gt-block cli 2 "block_size" "$LOOM" bench --model tiny --seq 64
  d cli-bench-steps-neg cli 2 --steps "$LOOM" bench --model tiny --seq 16 --steps -1
  d cli-bench-model-bogus cli 2 gpt9 "$LOOM" bench --model gpt9
  d cli-bench-device-bogus cli 2 tpu "$LOOM" bench --model tiny --seq 16 --device tpu
  d cli-bench-oom-ulimit cli 5 "memory" bash -c "ulimit -v 1500000; exec '$LOOM' bench \
--model gpt2-1.5b --batch 1 --seq 16 --steps 1 --warmup 0"
  d cli-train-oom-ulimit cli 5 "memory" bash -c "ulimit -v 1500000; exec '$LOOM' train \
'$W/base.pbtxt' --set output_dir='$W/o/oom' --set model.n_layer=48 --set model.n_embd=2048 \
--set model.n_head=16"
  D_POST=post_tiny_bench d cli-bench-tiny-ok cli 0 "" "$LOOM" bench --model tiny --seq 16 --steps 2 \
    --warmup 1
}

post_tiny_bench() { grep -q 'tokens_per_s' "$2" || echo "no tokens_per_s in the output"; }

drills_launch_pipeline() {
  d cli-launch-n-zero cli 2 -n "$LOOM" launch -n 0 "$W/base.pbtxt"
  d cli-launch-n-neg cli 2 -n "$LOOM" launch -n -1 "$W/base.pbtxt"
  d cli-launch-n-huge cli 2 -n "$LOOM" launch -n 2305843009213693952 "$W/base.pbtxt"
  d cli-launch-config-missing cli 2 "$W/o/none.pbtxt" "$LOOM" launch -n 2 "$W/o/none.pbtxt"
  d cli-launch-hostfile-missing cli 2 "$W/o/none.hosts" "$LOOM" launch -n 2 \
    --hostfile "$W/o/none.hosts" "$W/base.pbtxt"
  d cli-launch-bad-set cli 2 n_layers "$LOOM" launch -n 2 "$W/base.pbtxt" --set model.n_layers=2
  mkdir -p "$W/o/stagedir.pbtxt"
  printf 'stage { name: "a" config: "%s" }\n' "$W/o/stagedir.pbtxt" >"$W/o/pipe-dir.pbtxt"
  d cli-pipeline-stage-directory cli 2 "$W/o/stagedir.pbtxt" "$LOOM" pipeline "$W/o/pipe-dir.pbtxt"
  d cli-pipeline-missing cli 2 "$W/o/none.pbtxt" "$LOOM" pipeline "$W/o/none.pbtxt"
  printf 'stage { name: "a" config: "%s" }\n' "$W/base.pbtxt" >"$W/o/pipe-ok.pbtxt"
  d cli-pipeline-until-unknown cli 2 --until "$LOOM" pipeline "$W/o/pipe-ok.pbtxt" --until nope
  printf 'stages { bogus: 1 }\n' >"$W/o/pipe-bogus.pbtxt"
  d cli-pipeline-garbage cli 2 "$W/o/pipe-bogus.pbtxt" "$LOOM" pipeline "$W/o/pipe-bogus.pbtxt"
}

# generate / eval from another working directory, on a run trained with relative paths.
drills_cwd() {
  mkdir -p "$W/o/rel"
  (cd "$W/o/rel" && cp -r "$W/tok" "$W/data" . &&
    sed -e "s#$W/tok#tok#g" -e "s#$W/data#data#g" -e "s#$W/o/rel-run#rel-run#" \
      <(base_config "$W/o/rel-run" 2) >rel.pbtxt &&
    "$LOOM" train rel.pbtxt >/dev/null 2>&1)
  D_CWD=/ d cwd-generate-abs cwd 0 "" "$LOOM" generate --checkpoint "$W/o/rel/rel-run/checkpoints" \
    --prompt "The quick" --max-new-tokens 4
  D_CWD=/ D_POST=post_eval_json d cwd-eval-abs cwd 0 "" "$LOOM" eval "$W/o/rel/rel-run/checkpoints" \
    --data "$W/data/train.val.h5"
  D_CWD=$W/o d cwd-generate-rel cwd 0 "" "$LOOM" generate --checkpoint rel/rel-run/checkpoints \
    --prompt "The quick" --max-new-tokens 4
  D_CWD=/tmp d cwd-generate-base cwd 0 "" "$LOOM" generate --checkpoint "$W/run/checkpoints" \
    --prompt "The quick" --max-new-tokens 4
}

drills_cli() {
  drills_generate
  drills_eval
  drills_convert_bench
  drills_launch_pipeline
  drills_cwd
}
