# shellcheck shell=bash
# Data drills (sourced by scripts/drills.sh): token datasets that are missing (exit 2: a file named
# in the config), empty, truncated, garbage bytes named .h5, another HDF5 file, tokens beyond the
# model's vocabulary, too few tokens for one window (exit 1: bad data, naming the file); and
# `loom preprocess` inputs: JSONL with malformed lines, missing or mistyped fields, invalid UTF-8,
# huge lines, an output that would overwrite the input or the other split (D8).

tr_data() {  # tr_data ID EXP NAME FILE: train with data.train_path=FILE
  d "$1" data "$2" "$3" "$LOOM" train "$W/base.pbtxt" --set "output_dir=$W/o/$1" \
    --set "data.train_path=$4"
}

drills_data_files() {
  local f=$W/o/data
  mkdir -p "$f"
  tr_data data-train-missing 2 "$f/none.h5" "$f/none.h5"
  d data-val-missing data 2 "$f/noval.h5" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/data-val-missing" --set "data.val_path=$f/noval.h5"
  : >"$f/empty.h5"
  tr_data data-train-empty 1 "$f/empty.h5" "$f/empty.h5"
  head -c 2000 "$W/data/train.h5" >"$f/trunc.h5"
  tr_data data-train-truncated 1 "$f/trunc.h5" "$f/trunc.h5"
  head -c 30000 "$W/data/train.h5" >"$f/trunc30k.h5"
  tr_data data-train-truncated-late 1 "$f/trunc30k.h5" "$f/trunc30k.h5"
  head -c 8192 /dev/urandom >"$f/garbage.h5"
  tr_data data-train-garbage 1 "$f/garbage.h5" "$f/garbage.h5"
  printf 'hello world\n' >"$f/text.h5"
  tr_data data-train-text 1 "$f/text.h5" "$f/text.h5"
  cp "$W/run/checkpoints/step_00000008/model-r00000.h5" "$f/model.h5"
  tr_data data-train-other-hdf5 1 "$f/model.h5" "$f/model.h5"
  cp "$W/data/train.h5" "$f/flip.h5"
  printf '\xff\xff\xff\xff' | dd of="$f/flip.h5" bs=1 seek=20000 conv=notrunc status=none
  D_POST=post_no_crash_only tr_data data-train-bytes-flipped '0|1' "$f/flip.h5" "$f/flip.h5"
  d data-vocab-beyond-model data '1|2' "$W/data/train.h5" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/data-vocab-beyond-model" --set model.vocab_size=100
  printf '{"text": "hi"}\n' >"$f/one.jsonl"
  "$LOOM" preprocess --input "$f/one.jsonl" --output "$f/tiny.h5" --vocab "$W/tok/vocab.json" \
    --merges "$W/tok/merges.txt" >/dev/null 2>&1
  tr_data data-train-too-short 1 "$f/tiny.h5" "$f/tiny.h5"
  d data-eval-garbage data 1 "$f/garbage.h5" "$LOOM" eval "$W/run/checkpoints" --data "$f/garbage.h5"
  "$LOOM" tokenizer train --input "$W/corpus.txt" --vocab-size 400 --min-frequency 1 \
    --output "$f/tok400" >/dev/null 2>&1
  "$LOOM" preprocess --input "$W/docs.jsonl" --output "$f/v400.h5" --vocab "$f/tok400/vocab.json" \
    --merges "$f/tok400/merges.txt" >/dev/null 2>&1
  tr_data data-train-vocab-400-model-300 '1|2' "$f/v400.h5" "$f/v400.h5"
  d data-eval-vocab-400-model-300 data '1|2' "$f/v400.h5" "$LOOM" eval "$W/run/checkpoints" \
    --data "$f/v400.h5"
}

post_no_crash_only() { return 0; }

pre() {  # pre ID EXP NAME INPUT [ARGS...]: loom preprocess INPUT -> $W/o/ID.h5
  local id=$1 exp=$2 name=$3 in=$4
  shift 4
  d "$id" data "$exp" "$name" "$LOOM" preprocess --input "$in" --output "$W/o/$id.h5" \
    --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt" "$@"
}

drills_preprocess() {
  local f=$W/o/pre
  mkdir -p "$f"
  pre pre-input-missing '1|2' "$f/none.jsonl" "$f/none.jsonl"
  : >"$f/empty.jsonl"
  pre pre-input-empty '0|1' "$f/empty.jsonl" "$f/empty.jsonl"
  printf '{"text": "a"}\n{"text": "b"\n' >"$f/malformed.jsonl"
  pre pre-jsonl-malformed 1 "malformed.jsonl line 2" "$f/malformed.jsonl"
  printf '{"text": "a"}\n{"body": "b"}\n' >"$f/nofield.jsonl"
  pre pre-jsonl-missing-field 1 "nofield.jsonl line 2" "$f/nofield.jsonl"
  printf '{"text": 5}\n' >"$f/wrongtype.jsonl"
  pre pre-jsonl-wrong-type 1 "wrongtype.jsonl line 1" "$f/wrongtype.jsonl"
  printf '{"text": null}\n' >"$f/null.jsonl"
  pre pre-jsonl-null 1 "null.jsonl line 1" "$f/null.jsonl"
  printf '[1, 2]\n' >"$f/array.jsonl"
  pre pre-jsonl-array-line 1 "array.jsonl line 1" "$f/array.jsonl"
  printf '{"text": "a\xff\xfeb"}\n' >"$f/badutf8.jsonl"
  pre pre-jsonl-bad-utf8 1 "badutf8.jsonl line 1" "$f/badutf8.jsonl"
  printf '{"text": "a"}\n\n{"text": "b"}\n' >"$f/blank.jsonl"
  pre pre-jsonl-blank-line '0|1' "$f/blank.jsonl" "$f/blank.jsonl"
  { printf '{"text": "'; head -c 5000000 /dev/zero | tr '\0' a; printf '"}\n'; } >"$f/huge.jsonl"
  D_T=120 pre pre-jsonl-huge-line 0 "" "$f/huge.jsonl"
  head -c 20000 /dev/urandom >"$f/random.jsonl"
  pre pre-jsonl-random-bytes 1 "$f/random.jsonl" "$f/random.jsonl"
  pre pre-text-field-missing 1 "text_body" "$W/docs.jsonl" --text-field text_body
  cp "$W/docs.jsonl" "$f/in.jsonl"
  d pre-output-equals-input data 2 "$f/in.jsonl" "$LOOM" preprocess --input "$f/in.jsonl" \
    --output "$f/in.jsonl" --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
  D_POST=post_input_intact d pre-output-equals-input-intact data 2 "$f/in.jsonl" "$LOOM" preprocess \
    --input "$f/in.jsonl" --output "$f/in.jsonl" --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
  d pre-val-output-equals-output data 2 "$f/same.h5" "$LOOM" preprocess --input "$W/docs.jsonl" \
    --output "$f/same.h5" --val-output "$f/same.h5" --val-fraction 0.1 \
    --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
  pre pre-val-fraction-one 2 --val-fraction "$W/docs.jsonl" --val-fraction 1
  pre pre-val-fraction-neg 2 --val-fraction "$W/docs.jsonl" --val-fraction -0.1
  pre pre-val-fraction-nan 2 --val-fraction "$W/docs.jsonl" --val-fraction nan
  pre pre-seed-neg 2 --seed "$W/docs.jsonl" --seed -1
  d pre-no-tokenizer data 2 --vocab "$LOOM" preprocess --input "$W/docs.jsonl" --output "$f/x.h5"
  d pre-output-is-dir data '1|2' "$f" "$LOOM" preprocess --input "$W/docs.jsonl" --output "$f" \
    --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
  d pre-output-dir-missing data '0|1' "" "$LOOM" preprocess --input "$W/docs.jsonl" \
    --output "$f/new/dir/x.h5" --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
  d pre-input-is-dir data '1|2' "$f" "$LOOM" preprocess --input "$f" --output "$f/y.h5" \
    --vocab "$W/tok/vocab.json" --merges "$W/tok/merges.txt"
}

post_input_intact() { cmp -s "$W/docs.jsonl" "$W/o/pre/in.jsonl" || echo "the input was changed"; }

drills_data() {
  drills_data_files
  drills_preprocess
}
