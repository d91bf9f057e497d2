# shellcheck shell=bash
# Checkpoint drills (sourced by scripts/drills.sh), each on a fresh copy of the base run's
# checkpoints (steps 2, 4, 6, 8): a bit flip, truncation or removal of each file, an edited or
# broken manifest, a missing optimizer tensor with the manifest re-hashed (D13), `latest` naming
# nothing, every checkpoint corrupt under --resume auto, a model of another shape, stale temp and
# empty step dirs with keep_last 1 (D2), a rollback then --resume auto (D3). An explicit resume of
# a broken checkpoint exits 3 naming the file; --resume auto falls back to the newest complete
# checkpoint by write order (docs/DISTRIBUTED.md), and exits 3 when none is left.

flip_bit() {  # flip_bit FILE OFFSET: xor the byte at OFFSET with 1
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  # shellcheck disable=SC2059
  printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

resume8() {  # resume8 ID EXP NAME CKPT_ROOT [ARGS...]: resume explicitly from step 8 of the copy
  local id=$1 exp=$2 name=$3 c=$4
  shift 4
  d "$id" checkpoint "$exp" "$name" "$LOOM" train "$W/base.pbtxt" --set "output_dir=$W/o/$id" \
    --set max_steps=10 --resume "$c/step_00000008" "$@"
}

auto10() {  # auto10 ID EXP NAME [ARGS...]: --resume auto on the copy at $W/o/ID, to step 10
  local id=$1 exp=$2 name=$3
  shift 3
  d "$id" checkpoint "$exp" "$name" "$LOOM" train "$W/base.pbtxt" --set "output_dir=$W/o/$id" \
    --set max_steps=10 --resume auto "$@"
}

drills_checkpoint_files() {
  local c file s8
  for file in tensors-r00000.h5 model-r00000.h5 meta.json vocab.json; do
    c=$(ckpt_copy "ck-flip-$file")
    s8=$c/step_00000008
    flip_bit "$s8/$file" $(($(stat -c %s "$s8/$file") / 2))
    resume8 "ck-flip-$file" 3 "$file" "$c"
    c=$(ckpt_copy "ck-trunc-$file")
    truncate -s $(($(stat -c %s "$c/step_00000008/$file") / 3)) "$c/step_00000008/$file"
    resume8 "ck-trunc-$file" 3 "$file" "$c"
    c=$(ckpt_copy "ck-missing-$file")
    rm "$c/step_00000008/$file"
    resume8 "ck-missing-$file" 3 "$file" "$c"
  done
  c=$(ckpt_copy ck-missing-manifest)
  rm "$c/step_00000008/MANIFEST.json"
  resume8 ck-missing-manifest 3 MANIFEST.json "$c"
  c=$(ckpt_copy ck-manifest-garbage)
  head -c 500 /dev/urandom >"$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-garbage 3 MANIFEST.json "$c"
  c=$(ckpt_copy ck-manifest-empty)
  : >"$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-empty 3 MANIFEST.json "$c"
  c=$(ckpt_copy ck-manifest-json-array)
  echo '[]' >"$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-json-array 3 MANIFEST.json "$c"
  c=$(ckpt_copy ck-manifest-hash-edited)
  sed -i '/"tensors-r00000.h5": {/,/}/s/"sha256": "[0-9a-f]*"/"sha256": "'"$(printf '0%.0s' {1..64})"'"/' \
    "$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-hash-edited 3 tensors-r00000.h5 "$c"
  c=$(ckpt_copy ck-manifest-bytes-edited)
  sed -i '/"tensors-r00000.h5": {/,/}/s/"bytes": \([0-9]*\)/"bytes": 1\1/' "$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-bytes-edited 3 tensors-r00000.h5 "$c"
  c=$(ckpt_copy ck-manifest-step-edited)
  sed -i 's/"step": 8/"step": 80/' "$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-step-edited 3 step_00000008 "$c"
  c=$(ckpt_copy ck-manifest-format-edited)
  sed -i 's/"loom-checkpoint"/"other"/' "$c/step_00000008/MANIFEST.json"
  resume8 ck-manifest-format-edited 3 MANIFEST.json "$c"
}

# D13: one optimizer tensor removed from tensors-r00000.h5 and the manifest re-hashed, so only the
# check that every expected tensor is present can catch it. Needs a Python with h5py
# ($DRILLS_PYTHON, the repository's .venv, or python3).
drills_checkpoint_d13() {
  local py="" c f sum bytes p
  sel ck-missing-optim-tensor || return 0
  for p in "${DRILLS_PYTHON:-}" "$root/.venv/bin/python" python3; do
    [ -n "$p" ] && "$p" -c 'import h5py' 2>/dev/null && { py=$p; break; }
  done
  if [ -z "$py" ]; then
    skip ck-missing-optim-tensor checkpoint "no python with h5py to delete an HDF5 dataset"
    return 0
  fi
  c=$(ckpt_copy ck-missing-optim-tensor)
  f=$c/step_00000008/tensors-r00000.h5
  "$py" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); del f['optim/exp_avg/wte.weight']" "$f"
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  bytes=$(stat -c %s "$f")
  sed -i "/\"tensors-r00000.h5\": {/,/}/{s/\"bytes\": [0-9]*/\"bytes\": $bytes/;s/\"sha256\": \"[0-9a-f]*\"/\"sha256\": \"$sum\"/}" \
    "$c/step_00000008/MANIFEST.json"
  resume8 ck-missing-optim-tensor 3 exp_avg/wte.weight "$c"
}

post_latest_ok() {  # `latest` names a complete checkpoint of step 10, and no temp dir is left
  local root=$W/o/$1/checkpoints l
  l=$(cat "$root/latest" 2>/dev/null)
  [ "$l" = step_00000010 ] || { echo "latest names '$l', expected step_00000010"; return 1; }
  [ -f "$root/$l/MANIFEST.json" ] || { echo "latest names $l, which has no MANIFEST.json"; return 1; }
  if compgen -G "$root/*.tmp-*" >/dev/null; then echo "temp dirs left: $(ls "$root")"; return 1; fi
}

post_resumed_from_6() { grep -q 'resumed from .*step_00000006 at step 6' "$2" || echo "not resumed from step 6"; post_latest_ok "$1"; }
post_resumed_from_8() { grep -q 'resumed from .*step_00000008 at step 8' "$2" || echo "not resumed from step 8"; post_latest_ok "$1"; }

drills_checkpoint_lineage() {
  local c
  c=$(ckpt_copy ck-latest-nothing)
  echo step_00000099 >"$c/latest"
  D_POST=post_resumed_from_8 auto10 ck-latest-nothing 0 ""
  c=$(ckpt_copy ck-latest-empty)
  : >"$c/latest"
  D_POST=post_resumed_from_8 auto10 ck-latest-empty 0 ""
  c=$(ckpt_copy ck-latest-garbage)
  head -c 100 /dev/urandom >"$c/latest"
  D_POST=post_resumed_from_8 auto10 ck-latest-garbage 0 ""
  c=$(ckpt_copy ck-newest-corrupt-fallback)
  truncate -s 100 "$c/step_00000008/tensors-r00000.h5"
  D_POST=post_resumed_from_6 auto10 ck-newest-corrupt-fallback 0 ""
  c=$(ckpt_copy ck-all-corrupt-auto)
  for s in 2 4 6 8; do truncate -s 100 "$c/step_0000000$s/model-r00000.h5"; done
  auto10 ck-all-corrupt-auto 3 "$c"
  c=$(ckpt_copy ck-stale-tmp)
  cp -r "$c/step_00000008" "$c/step_00000010.tmp-999999"
  rm "$c/step_00000010.tmp-999999/MANIFEST.json"
  D_POST=post_resumed_from_8 auto10 ck-stale-tmp 0 ""
  c=$(ckpt_copy ck-keep1-empty-step)
  mkdir "$c/step_00000099"
  D_POST=post_latest_ok auto10 ck-keep1-empty-step 0 "" --set checkpoint.keep_last=1
  c=$(ckpt_copy ck-keep1-older-run)
  cp -r "$W/run/checkpoints/step_00000008" "$c/step_00000050"
  echo step_00000008 >"$c/latest"
  D_POST=post_latest_ok auto10 ck-keep1-older-run 0 "" --set checkpoint.keep_last=1
  # D3: roll back to step 2, train to 7 (saves 5 and 7), then --resume auto must take 7, not 8.
  c=$(ckpt_copy ck-rollback)
  "$LOOM" train "$W/base.pbtxt" --set "output_dir=$W/o/ck-rollback" --set max_steps=7 \
    --set checkpoint.interval=5 --resume "$c/step_00000002" >/dev/null 2>&1
  D_POST=post_rollback d ck-rollback checkpoint 0 "" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/ck-rollback" --set max_steps=9 --set checkpoint.interval=5 --resume auto
}

post_rollback() {
  grep -q 'resumed from .*step_00000007 at step 7' "$2" || { echo "not resumed from step 7"; return 1; }
  grep -q '"step": 8, "loss"' "$W/o/ck-rollback/metrics.jsonl" || echo "no step 8 in metrics.jsonl"
}

drills_checkpoint_fit() {
  local c=$W/run/checkpoints/step_00000008 id
  for a in model.n_embd=64 model.n_layer=3 model.vocab_size=320 model.block_size=32 \
    model.tie_embeddings=false model.bias=false; do
    id=ck-wrong-shape-$a
    d "$id" checkpoint 3 step_00000008 "$LOOM" train "$W/base.pbtxt" --set "output_dir=$W/o/$id" \
      --set max_steps=10 --set "$a" --resume "$c"
  done
  d ck-resume-missing-dir checkpoint 3 "$W/o/none" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/ck-rmd" --resume "$W/o/none"
  d ck-resume-file checkpoint 3 "$W/base.pbtxt" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/ck-rf" --resume "$W/base.pbtxt"
  mkdir -p "$W/o/ck-empty-dir"
  d ck-resume-empty-dir checkpoint 3 "$W/o/ck-empty-dir" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/ck-red" --resume "$W/o/ck-empty-dir"
  d ck-init-from-wrong-shape checkpoint '2|3' step_00000008 "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/ck-ifws" --set model.n_embd=64 --set "init_from=$c"
}

drills_checkpoint_readers() {
  local c v=$W/data/train.val.h5
  c=$(ckpt_copy ck-readers-model)
  flip_bit "$c/step_00000008/model-r00000.h5" 100000
  d ck-eval-flip-model checkpoint 3 model-r00000.h5 "$LOOM" eval "$c/step_00000008" --data "$v"
  d ck-generate-flip-model checkpoint 3 model-r00000.h5 "$LOOM" generate \
    --checkpoint "$c/step_00000008" --prompt hi --max-new-tokens 2
  d ck-convert-flip-model checkpoint 3 model-r00000.h5 "$LOOM" convert --from loom \
    "$c/step_00000008" --to hf "$W/o/ck-cv"
  d ck-init-from-flip-model checkpoint 3 model-r00000.h5 "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/ck-iffm" --set "init_from=$c/step_00000008"
  c=$(ckpt_copy ck-readers-optim)
  truncate -s 1000 "$c/step_00000008/tensors-r00000.h5"
  d ck-generate-weights-only checkpoint 0 "" "$LOOM" generate --checkpoint "$c/step_00000008" \
    --prompt hi --max-new-tokens 2
  D_POST=post_eval_json d ck-eval-weights-only checkpoint 0 "" "$LOOM" eval "$c/step_00000008" --data "$v"
}

drills_checkpoint() {
  drills_checkpoint_files
  drills_checkpoint_d13
  drills_checkpoint_lineage
  drills_checkpoint_fit
  drills_checkpoint_readers
}
