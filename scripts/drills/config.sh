# shellcheck shell=bash
# Config drills (sourced by scripts/drills.sh): every numeric field with a negative, zero (where
# invalid), huge (2^61) and non-finite value, wrong types, unknown enum values (as names and as
# numbers, in --set and in the file), unknown fields, --set syntax, config files that are
# missing, directories, empty, binary garbage, truncated, JSON variants, and cross-field errors.
# A bad value must exit 2 and its error must name the field (or the file and line).

INT_FIELDS="model.n_layer model.n_head model.n_embd model.vocab_size model.vocab_pad_multiple
model.block_size model.intermediate_size model.n_kv_head parallel.tp parallel.pp parallel.dp
parallel.micro_batches parallel.zero_stage data.seq_len schedule.warmup_steps schedule.decay_steps
batch.micro_batch_size batch.global_batch_size eval.interval eval.steps checkpoint.interval
checkpoint.keep_last logging.interval max_steps loss_scale.growth_interval"
# Fields where 0 is invalid (the others document 0 as "off" or "derive").
ZERO_INVALID="model.n_layer model.n_head model.n_embd model.vocab_size model.vocab_pad_multiple
model.block_size parallel.tp parallel.pp data.seq_len schedule.decay_steps batch.micro_batch_size
batch.global_batch_size eval.steps max_steps loss_scale.growth_interval"
FLOAT_FIELDS="model.dropout model.init_std model.norm_eps model.rope_theta
model.rope_scaling.factor model.rope_scaling.low_freq_factor model.rope_scaling.high_freq_factor
optimizer.lr optimizer.beta1 optimizer.beta2 optimizer.eps optimizer.weight_decay
optimizer.momentum optimizer.grad_clip schedule.min_lr schedule.min_lr_ratio
checkpoint.time_interval loss_scale.init_scale loss_scale.growth_factor
loss_scale.backoff_factor ppo.kl_coef ppo.kl_target ppo.gamma ppo.lam ppo.clip ppo.value_clip
ppo.missing_eos_penalty ppo.clip_high ppo.overlong_penalty_factor ppo.rollout.temperature
ppo.rollout.top_p dpo.beta dpo.label_smoothing dpo.simpo_gamma"
# Finite values outside each field's documented range (config/Config.proto).
BAD_FLOATS="model.dropout=1 model.dropout=-0.1 model.norm_eps=-1 optimizer.lr=-1 optimizer.lr=0
optimizer.beta1=1 optimizer.beta1=-0.5 optimizer.beta2=1.5 optimizer.eps=-1 optimizer.weight_decay=-1
optimizer.momentum=-1 optimizer.grad_clip=-1 schedule.min_lr=-1 schedule.min_lr_ratio=-0.5
schedule.min_lr_ratio=2 checkpoint.time_interval=-1 model.init_std=-1 optimizer.lr=1e400"
ENUMS="device stage dtype recompute optimizer.type schedule.decay parallel.schedule model.norm
model.position model.mlp logging.progress"

tr_set() {  # tr_set ID EXP NAME ARGS...: loom train base.pbtxt --set output_dir=... ARGS
  local id=$1 exp=$2 name=$3
  shift 3
  d "$id" config "$exp" "$name" "$LOOM" train "$W/base.pbtxt" --set "output_dir=$W/o/$id" "$@"
}

drills_config_fields() {
  local f v
  for f in $INT_FIELDS; do
    tr_set "config-neg-$f" 2 "$f" --set "$f=-1"
    tr_set "config-huge-$f" 2 "$f" --set "$f=2305843009213693952"
    tr_set "config-int64-overflow-$f" 2 "$f" --set "$f=99999999999999999999"
    tr_set "config-type-$f" 2 "$f" --set "$f=two"
  done
  for f in $ZERO_INVALID; do tr_set "config-zero-$f" 2 "$f" --set "$f=0"; done
  for f in $FLOAT_FIELDS; do
    for v in inf -inf nan; do tr_set "config-nonfinite-$f=$v" 2 "$f" --set "$f=$v"; done
  done
  for v in $BAD_FLOATS; do tr_set "config-range-$v" 2 "${v%%=*}" --set "$v"; done
  for f in $ENUMS; do
    tr_set "config-enum-int-$f" 2 "$f" --set "$f=9"
    tr_set "config-enum-name-$f" 2 "$f" --set "$f=BOGUS"
  done
  tr_set config-enum-int-optimizer.type=7 2 optimizer.type --set optimizer.type=7
  tr_set config-bool-model.bias=maybe 2 model.bias --set model.bias=maybe
  tr_set config-bool-data.shuffle=2 2 data.shuffle --set data.shuffle=2
  tr_set config-seed-negative 2 seed --set seed=-1
  tr_set config-rope-llama3-orig-pos 2 original_max_positions --set model.position=ROPE \
    --set model.rope_scaling.type=LLAMA3 --set model.rope_scaling.original_max_positions=-1
}

# PPO fields are checked for stage PPO: a small GRPO config on the base run's checkpoint.
PPO_INT_FIELDS="ppo.epochs ppo.mini_batches ppo.rollout.max_new_tokens ppo.rollout.batch_size
ppo.rollout.top_k ppo.overlong_buffer ppo.sample_interval ppo.group_size"
drills_config_ppo() {
  local f p=$W/o/ppo.pbtxt
  for f in 1 2 3 4 5 6; do echo "{\"prompt\": \"The quick brown fox $f\", \"answer\": \"$f\"}"; done \
    >"$W/o/prompts.jsonl"
  cat >"$p" <<EOF
name: "ppo" stage: PPO max_steps: 1 init_from: "$W/run/checkpoints/step_00000008"
model { n_layer: 2 n_head: 4 n_embd: 32 vocab_size: 300 block_size: 16 dropout: 0.0 }
data { tokenizer_vocab: "$W/tok/vocab.json" tokenizer_merges: "$W/tok/merges.txt" }
ppo { prompts_path: "$W/o/prompts.jsonl" algorithm: GRPO group_size: 2
      reward { length_penalty { per_unit: 1 } } rollout { max_new_tokens: 4 batch_size: 2 } }
batch { micro_batch_size: 2 }
logging { progress: OFF }
EOF
  d config-ppo-valid config 0 "" "$LOOM" train "$p" --set "output_dir=$W/o/config-ppo-valid"
  for f in $PPO_INT_FIELDS; do
    d "config-ppo-neg-$f" config 2 "$f" "$LOOM" train "$p" --set "output_dir=$W/o/ppo-x" --set "$f=-1"
    d "config-ppo-huge-$f" config 2 "$f" "$LOOM" train "$p" --set "output_dir=$W/o/ppo-x" \
      --set "$f=2305843009213693952"
  done
  d config-ppo-kl-horizon-adaptive config 2 ppo.kl_horizon "$LOOM" train "$p" \
    --set "output_dir=$W/o/ppo-x" --set ppo.adaptive_kl=true --set ppo.kl_horizon=-1
  d config-ppo-prompts-missing config 2 "$W/o/none.jsonl" "$LOOM" train "$p" \
    --set "output_dir=$W/o/ppo-x" --set "ppo.prompts_path=$W/o/none.jsonl"
}

drills_config_set_syntax() {
  tr_set config-set-unknown-top 2 '"seq"' --set seq=1
  tr_set config-set-unknown-nested 2 n_layers --set model.n_layers=2
  tr_set config-set-message-as-scalar 2 model --set model=3
  tr_set config-set-scalar-as-message 2 n_layer --set model.n_layer.x=1
  tr_set config-set-no-equals 2 model.n_layer --set model.n_layer
  tr_set config-set-empty-path 2 '--set' --set =3
  tr_set config-set-empty 2 '--set' --set ''
  tr_set config-set-double-dot 2 'model..n_layer' --set model..n_layer=2
  tr_set config-set-missing-value 2 '--set' --set
  tr_set config-set-empty-int 2 model.n_layer --set model.n_layer=
  tr_set config-set-hex-int 2 model.n_layer --set model.n_layer=0x10
  tr_set config-set-float-in-int 2 model.n_layer --set model.n_layer=2.5
  d config-unknown-flag config 2 --bogus "$LOOM" train "$W/base.pbtxt" --bogus 1
  d config-two-configs config 2 CONFIG "$LOOM" train "$W/base.pbtxt" "$W/base.pbtxt"
  d config-resume-twice config 2 --resume "$LOOM" train "$W/base.pbtxt" --resume auto --resume none
}

cfg_file() {  # cfg_file ID EXP NAME TEXT: the config file $W/o/ID.EXT (EXT from the id) holds TEXT
  local id=$1 exp=$2 name=$3 text=$4 ext=pbtxt
  [[ "$id" == *json* ]] && ext=json
  printf '%s' "$text" >"$W/o/$id.$ext"
  [ "$name" = FILE ] && name="$W/o/$id.$ext"
  d "$id" config "$exp" "$name" "$LOOM" train "$W/o/$id.$ext"
}

drills_config_files() {
  local base good
  base=$(base_config "$W/o/cfgfile-run" 2)
  d config-file-missing config 2 "$W/o/nope.pbtxt" "$LOOM" train "$W/o/nope.pbtxt"
  mkdir -p "$W/o/cfgdir.pbtxt"
  d config-file-directory config 2 "$W/o/cfgdir.pbtxt" "$LOOM" train "$W/o/cfgdir.pbtxt"
  cfg_file config-file-empty 2 max_steps ''
  printf '\x01\x02\xff\xfe\x00garbage\x7f\x80{{{' >"$W/o/config-file-garbage.pbtxt"
  d config-file-garbage config 2 "$W/o/config-file-garbage.pbtxt" "$LOOM" train "$W/o/config-file-garbage.pbtxt"
  head -c 4096 /dev/urandom >"$W/o/config-file-random.pbtxt"
  d config-file-random config 2 "$W/o/config-file-random.pbtxt" "$LOOM" train "$W/o/config-file-random.pbtxt"
  cfg_file config-file-truncated 2 FILE "${base:0:120}"
  cfg_file config-file-unknown-field 2 FILE "$base
bogus: 1"
  cfg_file config-file-unknown-nested 2 n_layers "max_steps: 2
model { n_layers: 2 }"
  cfg_file config-file-enum-int 2 optimizer.type "max_steps: 2
optimizer { type: 7 }"
  cfg_file config-file-device-int 2 device "max_steps: 2
device: 5"
  cfg_file config-file-dtype-int 2 dtype "max_steps: 2
dtype: 9"
  cfg_file config-file-decay-int 2 schedule.decay "max_steps: 2
schedule { decay: 9 }"
  cfg_file config-file-pp-schedule-int 2 parallel.schedule "max_steps: 2
parallel { schedule: 9 }"
  cfg_file config-file-string-for-int 2 FILE "$base
max_steps: \"many\""
  cfg_file config-file-eps-inf 2 optimizer.eps "max_steps: 2
optimizer { eps: inf }"
  cfg_file config-file-deep-nesting 2 FILE "$(printf 'model { %.0s' $(seq 1 200))"
  cfg_file config-file-long-line 2 FILE "name: \"$(head -c 1000000 /dev/zero | tr '\0' a)\" bogus: 1"
  good="{\"name\": \"j\", \"max_steps\": 2, \"output_dir\": \"$W/o/cfgjson-run\",
 \"model\": {\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, \"vocab_size\": 300, \"block_size\": 16},
 \"data\": {\"train_path\": \"$W/data/train.h5\", \"seq_len\": 16},
 \"batch\": {\"micro_batch_size\": 2}, \"logging\": {\"progress\": \"OFF\"}"
  cfg_file config-json-valid 0 "" "$good}"
  cfg_file config-json-unknown-field 2 bogus "$good, \"bogus\": 1}"
  cfg_file config-json-wrong-type 2 max_steps "$good, \"max_steps\": \"x\"}"
  cfg_file config-json-truncated 2 FILE "${good:0:60}"
  cfg_file config-json-array 2 FILE '[1, 2, 3]'
  cfg_file config-json-message-as-number 2 FILE "$good, \"optimizer\": 5}"
  cfg_file config-json-huge-number 2 FILE "$good, \"optimizer\": {\"lr\": 1e400}}"
  cfg_file config-json-enum-int 2 optimizer.type "$good, \"optimizer\": {\"type\": 7}}"
  cfg_file config-json-null 2 FILE 'null'
  cfg_file config-json-pbtxt-inside 2 FILE "$base"
}

drills_config_cross() {
  tr_set config-cross-embd-heads 2 n_head --set model.n_embd=30
  tr_set config-cross-kv-heads 2 n_kv_head --set model.n_kv_head=3
  tr_set config-cross-global-batch 2 global_batch_size --set batch.global_batch_size=5
  tr_set config-cross-seq-gt-block 2 seq_len --set data.seq_len=32
  tr_set config-cross-min-lr-both 2 min_lr --set schedule.min_lr=1e-5 --set schedule.min_lr_ratio=0.1
  tr_set config-cross-nesterov 2 nesterov --set optimizer.type=SGD --set optimizer.nesterov=true
  tr_set config-cross-tp-world 2 world --set parallel.tp=2
  tr_set config-cross-pp-world 2 world --set parallel.pp=2
  tr_set config-cross-lora-pretrain 2 lora --set lora.rank=4
  tr_set config-cross-device-cuda '1|2' cuda --set device=CUDA
  tr_set config-cross-train-path-dir '1|2' "$W/data" --set "data.train_path=$W/data"
  tr_set config-cross-init-from-missing '2|3' "$W/o/none" --set "init_from=$W/o/none"
  tr_set config-cross-init-from-hf-missing '2|3' "$W/o/nohf" --set "init_from=hf:$W/o/nohf"
  d config-plan-huge-block config 2 block_size "$LOOM" plan "$W/base.pbtxt" \
    --set model.block_size=2305843009213693952 --set model.n_embd=8
  d config-plan-world-zero config 2 --world "$LOOM" plan "$W/base.pbtxt" --world 0
  d config-plan-world-huge config 2 --world "$LOOM" plan "$W/base.pbtxt" --world 2305843009213693952
  d config-plan-large-model-ok config 0 "" "$LOOM" plan "$W/base.pbtxt" --set model.n_layer=4096 \
    --set model.n_embd=131072 --set model.n_head=4096 --set model.block_size=1048576 \
    --set data.seq_len=16
}

drills_config() {
  drills_config_fields
  drills_config_set_syntax
  drills_config_ppo
  drills_config_files
  drills_config_cross
}
