# shellcheck shell=bash
# Fault drills (sourced by scripts/drills.sh): kill -9 during training and during a save, then
# --resume auto must equal an uninterrupted run bitwise (metrics.jsonl without timings); SIGTERM,
# SIGINT, SIGUSR1 mid-run (exit 7, a checkpoint of the step it was on), a second signal (128 +
# signal); under `loom launch -n 2`: SIGTERM, a dead rank (kill -9) and a frozen rank (kill -STOP)
# with LOOM_COMM_TIMEOUT_S=5 (the job ends nonzero within the deadline); a full disk (tmpfs of
# 2 MiB) for checkpoints, metrics, TensorBoard, preprocess, tokenizer and convert output, and
# /dev/full for metrics (exit 1 naming the path, the last checkpoint intact); NaN (lr 1e30: exit 6,
# no non-finite checkpoint, the last good one kept).

LONG_STEPS=300
# The runs that are signalled or killed: evaluation at every step (so a stop always lands on an
# evaluation step), checkpoints every 50 steps.
long_config() { base_config "$1" $LONG_STEPS 50 | sed 's/eval { interval: 4 steps: 2 }/eval { interval: 1 steps: 1 }/'; }
FAULT_TIMEOUT=5  # LOOM_COMM_TIMEOUT_S of the launch drills

# A background loom run whose process we signal. Written as a script for `d`, which runs it under
# timeout: start CMD, wait until metrics.jsonl of DIR has AFTER loss records (or FILE_GLOB exists),
# send SIG, wait, exit with loom's status. Prints "drill: fault after N ms; exit after M ms".
fault_script() {  # fault_script DIR SIG AFTER GLOB CMD...
  local dir=$1 sig=$2 after=$3 glob=$4
  shift 4
  printf '%q ' "$@"
  cat <<EOF
>"$dir.out" 2>&1 &
p=\$!
for i in \$(seq 1 6000); do
  if [ -n "$glob" ]; then compgen -G "$glob" >/dev/null && break
  elif [ "\$(grep -c '"loss"' "$dir/metrics.jsonl" 2>/dev/null)" -ge $after ]; then break; fi
  kill -0 \$p 2>/dev/null || break
  sleep 0.005
done
t0=\${EPOCHREALTIME/./}
for s in $sig; do kill -\$s \$p 2>/dev/null; sleep 0.02; done
wait \$p; rc=\$?
t1=\${EPOCHREALTIME/./}
cat "$dir.out"
echo "drill: exit \$(( (t1 - t0) / 1000 )) ms after the signal"
exit \$rc
EOF
}

ref_run() {  # ref_run NAME CONFIG [launch]: an uninterrupted reference run (once)
  [ -f "$W/o/$1/done" ] && return 0
  if [ "${3:-}" = launch ]; then
    "$LOOM" launch -n 2 "$2" >/dev/null 2>&1
  else
    "$LOOM" train "$2" >/dev/null 2>&1
  fi && touch "$W/o/$1/done"
}

same_metrics() {  # same_metrics DIR REF: REF's config is $W/o/REF.pbtxt; run it once
  local mode=""
  [ "$2" = ref-launch ] && mode=launch
  ref_run "$2" "$W/o/$2.pbtxt" $mode
  if ! [ -f "$W/o/$2/done" ]; then echo "the reference run failed"; return 1; fi
  if ! diff <(metrics_core "$W/o/$1/metrics.jsonl") <(metrics_core "$W/o/$2/metrics.jsonl") \
    >/dev/null; then
    echo "metrics differ from the uninterrupted run: $(diff <(metrics_core "$W/o/$1/metrics.jsonl") \
      <(metrics_core "$W/o/$2/metrics.jsonl") | head -c 300)"
    return 1
  fi
}

post_resumed_same() {  # ID is fault-X-resume, the run dir is $W/o/fault-X, the reference in $REF
  grep -q 'resumed from' "$2" || { echo "did not resume"; return 1; }
  same_metrics "${1%-resume}" "$REF"
}

post_stopped_at_step() {  # the run stopped with a complete checkpoint of its last logged step
  local dir=$W/o/$1 last l
  last=$(grep '"loss"' "$dir/metrics.jsonl" | tail -n1 | sed -E 's/.*"step": ([0-9]+).*/\1/')
  l=$(cat "$dir/checkpoints/latest" 2>/dev/null)
  [ "$l" = "$(printf 'step_%08d' "$last")" ] || { echo "latest '$l', last logged step $last"; return 1; }
  [ -f "$dir/checkpoints/$l/MANIFEST.json" ] || { echo "$l has no MANIFEST.json"; return 1; }
  [ "$last" -lt "$LONG_STEPS" ] || { echo "the signal came after the run ended"; return 1; }
}

# A second signal while the first is handled exits at once without a checkpoint (128 + signal):
# the newest checkpoint must still be complete. If the first had already ended the run, exit 7.
post_double() {
  local root=$W/o/$1/checkpoints l
  grep -q 'second stop signal' "$2" || { post_stopped_at_step "$@"; return; }
  l=$(cat "$root/latest" 2>/dev/null)
  [ -f "$root/$l/MANIFEST.json" ] || { echo "latest '$l' is not a complete checkpoint"; return 1; }
  if compgen -G "$root/*.tmp-*" >/dev/null; then echo "(a temp dir is left until the next save)"; fi
  return 0
}

drills_kill() {
  local dir
  long_config "$W/o/ref-long" >"$W/o/ref-long.pbtxt"
  for case in "kill9-train 9 75" "sigterm TERM 75" "sigint INT 75" "sigusr1 USR1 75" \
    "double-term TERM_TERM 75"; do
    set -- $case
    local id=$1 sig=${2/_/ } exp=7 cat=signal
    [ "$id" = kill9-train ] && cat=kill exp=nz
    [ "$id" = double-term ] && exp='7|143'  # 143: the second came while the first was handled
    dir=$W/o/fault-$id
    sel "fault-$id" || continue
    long_config "$dir" >"$dir.pbtxt"
    local post=post_stopped_at_step
    [ "$exp" = nz ] && post=""
    [ "$id" = double-term ] && post=post_double
    D_SIGOK=1 D_NOERR=1 D_POST=$post d "fault-$id" "$cat" "$exp" "" bash -c \
      "$(fault_script "$dir" "$sig" "$3" "" "$LOOM" train "$dir.pbtxt")"
    REF=ref-long D_POST=post_resumed_same d "fault-$id-resume" "$cat" 0 "" "$LOOM" train \
      "$dir.pbtxt" --resume auto
  done
}

# kill -9 while a checkpoint is being written (a step_*.tmp-* dir exists): a larger model makes
# the save take long enough to land in; up to 3 tries.
drills_kill_save() {
  local dir=$W/o/fault-kill9-save caught=0
  sel fault-kill9-save-resume || return 0
  base_config "$W/o/ref-big" 40 10 4 256 >"$W/o/ref-big.pbtxt"
  for _ in 1 2 3; do
    rm -rf "$dir"
    base_config "$dir" 40 10 4 256 >"$dir.pbtxt"
    bash -c "$(fault_script "$dir" 9 0 "$dir/checkpoints/step_0000002*.tmp-*" "$LOOM" train \
      "$dir.pbtxt")" >/dev/null 2>&1
    if compgen -G "$dir/checkpoints/step_*.tmp-*" >/dev/null; then caught=1; break; fi
  done
  if [ $caught = 0 ]; then
    skip fault-kill9-save-resume kill "3 kills missed every save (no step_*.tmp-* dir left)"
    return 0
  fi
  REF=ref-big D_POST=post_save_resume d fault-kill9-save-resume kill 0 "" "$LOOM" train \
    "$dir.pbtxt" --resume auto
}

post_save_resume() {
  post_resumed_same "$@" || return 1
  if compgen -G "$W/o/fault-kill9-save/checkpoints/step_*.tmp-*" >/dev/null; then
    echo "stale temp dir left: $(ls "$W/o/fault-kill9-save/checkpoints")"
    return 1
  fi
}

# The pids of the `loom train` ranks under process PID (recursively).
rank_pids() {
  local kids k
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null)
  for k in $kids; do
    if tr '\0' '\n' <"/proc/$k/cmdline" 2>/dev/null | head -n2 | tr '\n' ' ' |
      grep -qE '(^|/)loom train $'; then echo "$k"; fi
    rank_pids "$k"
  done
}

# A launch script: start `loom launch -n 2`, wait for AFTER steps, then FAULT: "TERM" (to the
# launcher), "rank9" (kill -9 rank 1) or "rankSTOP" (kill -STOP rank 1). Rank pids go to DIR.pids.
launch_script() {  # launch_script DIR FAULT AFTER
  local dir=$1 fault=$2 after=$3
  declare -f rank_pids
  cat <<EOF
LOOM_COMM_TIMEOUT_S=$FAULT_TIMEOUT $(printf '%q' "$LOOM") launch -n 2 "$dir.pbtxt" >"$dir.out" 2>&1 &
p=\$!
for i in \$(seq 1 6000); do
  [ "\$(grep -c '"loss"' "$dir/metrics.jsonl" 2>/dev/null)" -ge $after ] && break
  kill -0 \$p 2>/dev/null || break
  sleep 0.005
done
ranks=\$(rank_pids \$p); echo \$ranks >"$dir.pids"
r1=""
for r in \$ranks; do tr '\0' '\n' </proc/\$r/environ | grep -qx OMPI_COMM_WORLD_RANK=1 && r1=\$r; done
t0=\${EPOCHREALTIME/./}
case $fault in
  TERM) kill -TERM \$p ;;
  rank9) kill -9 \$r1 ;;
  rankSTOP) kill -STOP \$r1 ;;
esac
wait \$p; rc=\$?
t1=\${EPOCHREALTIME/./}
cat "$dir.out"
echo "drill: rank1=\$r1 exit \$(( (t1 - t0) / 1000 )) ms after the fault"
exit \$rc
EOF
}

post_within_deadline() {  # the job ended within the deadline + grace + 10 s of slack
  local ms
  ms=$(sed -n 's/^drill: .*exit \([0-9]*\) ms after the fault/\1/p' "$2")
  [ -n "$ms" ] || { echo "no timing line"; return 1; }
  [ "$ms" -le $(((FAULT_TIMEOUT + 2 + 10) * 1000)) ] || { echo "ended $ms ms after the fault"; return 1; }
}

launch_cleanup() {  # kill -CONT / -KILL the rank processes this drill started, by pid
  local p
  for p in $(cat "$1.pids" 2>/dev/null); do
    kill -CONT "$p" 2>/dev/null
    kill -KILL "$p" 2>/dev/null
  done
}

drills_launch() {
  local dir
  long_config "$W/o/ref-launch" >"$W/o/ref-launch.pbtxt"
  dir=$W/o/launch-sigterm
  if sel launch-sigterm || sel launch-sigterm-resume; then
    long_config "$dir" >"$dir.pbtxt"
    D_T=120 D_SIGOK=1 D_NOERR=1 D_POST=post_stopped_at_step d launch-sigterm launch 7 "" bash -c \
      "$(launch_script "$dir" TERM 75)"
    launch_cleanup "$dir"
    REF=ref-launch D_T=120 D_POST=post_resumed_same_launch d launch-sigterm-resume launch 0 "" \
      "$LOOM" launch -n 2 "$dir.pbtxt" --resume auto
  fi
  dir=$W/o/launch-dead-rank
  base_config "$dir" 100000 1000 >"$dir.pbtxt"
  D_T=90 D_SIGOK=1 D_NOERR=1 D_POST=post_within_deadline d launch-dead-rank launch nz "" bash -c \
    "$(launch_script "$dir" rank9 20)"
  launch_cleanup "$dir"
  dir=$W/o/launch-frozen-rank
  base_config "$dir" 100000 1000 >"$dir.pbtxt"
  D_T=90 D_POST=post_within_deadline d launch-frozen-rank launch 4 "world ranks [1]" bash -c \
    "$(launch_script "$dir" rankSTOP 20)"
  launch_cleanup "$dir"
}

post_resumed_same_launch() { grep -q 'resumed from' "$2" || { echo "did not resume"; return 1; }; same_metrics launch-sigterm "$REF"; }

post_last_ckpt_intact() {  # the checkpoint `latest` names under DIR is complete and evaluates
  local root=$W/o/full/ck/checkpoints
  [ -f "$root/$(cat "$root/latest" 2>/dev/null)/MANIFEST.json" ] || { echo "latest names no complete checkpoint"; return 1; }
  "$LOOM" eval "$root" --data "$W/data/train.val.h5" >/dev/null 2>&1 || { echo "latest does not load"; return 1; }
}

fill_disk() { rm -rf "${W:?}/o/full/"*; dd if=/dev/zero of="$W/o/full/fill" bs=64k status=none 2>/dev/null; }

drills_disk() {
  local f=$W/o/full
  mkdir -p "$f"
  if ! mount -t tmpfs -o size=2m tmpfs "$f" 2>/dev/null; then
    for id in checkpoint metrics tensorboard preprocess tokenizer convert; do
      skip "disk-full-$id" disk "mount -t tmpfs not permitted (needs root / CAP_SYS_ADMIN)"
    done
  else
    MOUNTS="$MOUNTS $f"
    base_config "$f/ck" 40 1 >"$W/o/disk-ck.pbtxt"
    D_POST=post_last_ckpt_intact d disk-full-checkpoint disk '1|3' "$f/ck" "$LOOM" train "$W/o/disk-ck.pbtxt"
    fill_disk
    d disk-full-metrics disk 1 metrics.jsonl "$LOOM" train "$W/base.pbtxt" --set "output_dir=$f/m" \
      --set "checkpoint.dir=$W/o/disk-m-ck"
    fill_disk
    d disk-full-tensorboard disk 1 "$f/t" "$LOOM" train "$W/base.pbtxt" --set "output_dir=$f/t" \
      --set "checkpoint.dir=$W/o/disk-t-ck" --set logging.jsonl=false --set logging.tensorboard=true
    fill_disk
    d disk-full-preprocess disk 1 "$f/p.h5" "$LOOM" preprocess --input "$W/docs.jsonl" \
      --output "$f/p.h5" --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
    fill_disk
    d disk-full-tokenizer disk 1 "$f/tok" "$LOOM" tokenizer train --input "$W/corpus.txt" \
      --vocab-size 300 --output "$f/tok"
    fill_disk
    d disk-full-convert disk '1|3' "$f/hf" "$LOOM" convert --from loom "$W/run/checkpoints" --to hf "$f/hf"
    rm -rf "${f:?}/"*
  fi
  # (Not /dev/full: a resume reads the old metrics.jsonl first, and /dev/full reads as endless
  # zeros.) A metrics.jsonl that cannot be opened: a directory of that name.
  mkdir -p "$W/o/metrics-dir/metrics.jsonl"
  d disk-metrics-is-dir disk 1 metrics.jsonl "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/metrics-dir" --set "checkpoint.dir=$W/o/metrics-dir-ck"
}

post_nan() {  # no checkpoint at or after the non-finite step; latest (if any) is complete
  local root=$W/o/${NAN_DIR:-$1}/checkpoints n l s
  n=$(sed -n 's/.*is [-a-z]* at step \([0-9]*\).*/\1/p' "$2" | head -n1)
  [ -n "$n" ] || { echo "no step in the error"; return 1; }
  for s in "$root"/step_*; do
    [ -e "$s" ] || continue
    s=${s##*step_}
    [ $((10#${s%%.*})) -lt "$n" ] || { echo "checkpoint step_$s at or after step $n"; return 1; }
  done
  if [ "${NAN_KEPT:-}" = 1 ]; then
    l=$(cat "$root/latest" 2>/dev/null)
    [ -f "$root/$l/MANIFEST.json" ] || { echo "latest '$l' is not complete"; return 1; }
  fi
}

drills_nan() {
  local c="$LOOM train $W/base.pbtxt --set checkpoint.interval=1 --set schedule.warmup_steps=0"
  # shellcheck disable=SC2086
  NAN_KEPT=1 D_POST=post_nan d nan-lr-1e30 nan 6 "at step" $c --set "output_dir=$W/o/nan-lr-1e30" \
    --set optimizer.lr=1e30 --set checkpoint.keep_last=1
  # shellcheck disable=SC2086
  NAN_DIR=nan-lr-1e30 NAN_KEPT=1 D_POST=post_nan d nan-lr-1e30-resume nan 6 "at step" $c \
    --set "output_dir=$W/o/nan-lr-1e30" --set optimizer.lr=1e30 --set checkpoint.keep_last=1 --resume auto
  # shellcheck disable=SC2086
  D_POST=post_nan d nan-init-std nan 6 "at step" $c --set "output_dir=$W/o/nan-init-std" \
    --set model.init_std=1e30
  # shellcheck disable=SC2086
  NAN_KEPT=1 D_POST=post_nan d nan-sgd-lr nan 6 "at step" $c --set "output_dir=$W/o/nan-sgd-lr" \
    --set optimizer.type=SGD --set optimizer.lr=1e30 --set optimizer.grad_clip=0 --set checkpoint.keep_last=2
  # shellcheck disable=SC2086
  NAN_KEPT=1 D_POST=post_nan d nan-no-clip nan 6 "at step" $c --set "output_dir=$W/o/nan-no-clip" \
    --set optimizer.lr=1e30 --set optimizer.grad_clip=0 --set checkpoint.keep_last=1
}

drills_faults() {
  drills_kill
  drills_kill_save
  drills_launch
  drills_disk
  drills_nan
}
