# shellcheck shell=bash
# Tokenizer drills (sourced by scripts/drills.sh): vocab.json, merges.txt and tokenizer.json that
# are missing, empty, garbage or of the wrong JSON shape, given to encode, preprocess and a
# training run's data.tokenizer_* fields; decode ids that would wrap in 32 bits (D10), negative or
# beyond the vocabulary; `tokenizer train` with a wrapping --vocab-size, missing or empty input.
# Missing files given on the command line or in a config: exit 1 or 2 naming the file; a file of
# the wrong content: exit 1 or 2 naming it.

enc() {  # enc ID EXP NAME ARGS...: loom tokenizer encode --text hello ARGS
  local id=$1 exp=$2 name=$3
  shift 3
  d "$id" tokenizer "$exp" "$name" "$LOOM" tokenizer encode --text "hello world" "$@"
}

drills_tokenizer_files() {
  local f=$W/o/tok v=$W/tok/vocab.json m=$W/tok/merges.txt
  mkdir -p "$f"
  enc tok-encode-ok 0 "" --vocab "$v" --merges "$m"
  enc tok-vocab-missing '1|2' "$f/none.json" --vocab "$f/none.json" --merges "$m"
  enc tok-merges-missing '1|2' "$f/none.txt" --vocab "$v" --merges "$f/none.txt"
  : >"$f/empty.json"
  enc tok-vocab-empty '1|2' "$f/empty.json" --vocab "$f/empty.json" --merges "$m"
  head -c 3000 /dev/urandom >"$f/garbage.json"
  enc tok-vocab-garbage '1|2' "$f/garbage.json" --vocab "$f/garbage.json" --merges "$m"
  printf '[1, 2, 3]' >"$f/array.json"
  enc tok-vocab-array '1|2' "$f/array.json" --vocab "$f/array.json" --merges "$m"
  printf '{"a": "x"}' >"$f/strval.json"
  enc tok-vocab-string-ids '1|2' "$f/strval.json" --vocab "$f/strval.json" --merges "$m"
  printf '{"a": 4294967297}' >"$f/bigid.json"
  enc tok-vocab-huge-id '1|2' "$f/bigid.json" --vocab "$f/bigid.json" --merges "$m"
  printf '{"a": -1}' >"$f/negid.json"
  enc tok-vocab-negative-id '1|2' "$f/negid.json" --vocab "$f/negid.json" --merges "$m"
  head -c 1500 "$v" >"$f/trunc.json"
  enc tok-vocab-truncated '1|2' "$f/trunc.json" --vocab "$f/trunc.json" --merges "$m"
  printf '#version: 0.2\nsingle\n' >"$f/merges-one.txt"
  enc tok-merges-one-token '1|2' "$f/merges-one.txt" --vocab "$v" --merges "$f/merges-one.txt"
  printf '#version: 0.2\nqqqq zzzz\n' >"$f/merges-unknown.txt"
  enc tok-merges-unknown-tokens '1|2' "$f/merges-unknown.txt" --vocab "$v" --merges "$f/merges-unknown.txt"
  head -c 3000 /dev/urandom >"$f/merges-garbage.txt"
  enc tok-merges-garbage '1|2' "$f/merges-garbage.txt" --vocab "$v" --merges "$f/merges-garbage.txt"
  enc tok-json-missing '1|2' "$f/none-tok.json" --tokenizer-json "$f/none-tok.json"
  enc tok-json-garbage '1|2' "$f/garbage.json" --tokenizer-json "$f/garbage.json"
  printf '{"model": 5}' >"$f/tj-model-num.json"
  enc tok-json-model-number '1|2' "$f/tj-model-num.json" --tokenizer-json "$f/tj-model-num.json"
  printf '{"version": "1.0"}' >"$f/tj-no-model.json"
  enc tok-json-no-model '1|2' "$f/tj-no-model.json" --tokenizer-json "$f/tj-no-model.json"
  printf '{"model": {"type": "WordPiece", "vocab": {}}}' >"$f/tj-wordpiece.json"
  enc tok-json-wordpiece '1|2' "$f/tj-wordpiece.json" --tokenizer-json "$f/tj-wordpiece.json"
  printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [5]}}' >"$f/tj-merge-num.json"
  enc tok-json-merge-number '1|2' "$f/tj-merge-num.json" --tokenizer-json "$f/tj-merge-num.json"
  enc tok-json-and-vocab-garbage-json '1|2' "$f/garbage.json" --vocab "$v" --merges "$m" \
    --tokenizer-json "$f/garbage.json"
  enc tok-vocab-without-merges 2 "--merges" --vocab "$v"
  d tok-pre-vocab-garbage tokenizer '1|2' "$f/garbage.json" "$LOOM" preprocess \
    --input "$W/docs.jsonl" --output "$f/p.h5" --vocab "$f/garbage.json" --merges "$m"
  # Intended (train/Trainer.cpp; README's fine-tune command relies on it: configs/gpt2-124m.pbtxt
  # names data/gpt2/vocab.json and init_from hf: brings its own): pretraining reads token ids, so
  # a missing tokenizer is a warning naming the file, and the checkpoints carry none.
  D_POST=post_tok_missing d tok-train-cfg-vocab-missing tokenizer 0 "" "$LOOM" train \
    "$W/base.pbtxt" --set "output_dir=$W/o/tok-cfg1" --set "data.tokenizer_vocab=$f/none.json"
  d tok-train-cfg-vocab-garbage tokenizer '1|2' "$f/garbage.json" "$LOOM" train "$W/base.pbtxt" \
    --set "output_dir=$W/o/tok-cfg2" --set "data.tokenizer_vocab=$f/garbage.json"
}

dec() {  # dec ID EXP NAME IDS
  d "$1" tokenizer "$2" "$3" "$LOOM" tokenizer decode --ids "$4" --vocab "$W/tok/vocab.json" \
    --merges "$W/tok/merges.txt"
}

drills_tokenizer_numbers() {
  local f=$W/o/tok
  dec tok-decode-ok 0 "" 40,41,42
  dec tok-decode-wrap 2 --ids 4294967297
  dec tok-decode-int64-overflow 2 --ids 99999999999999999999
  dec tok-decode-neg 2 --ids 1,-3
  dec tok-decode-beyond-vocab 2 --ids 1,300
  dec tok-decode-empty-item 2 --ids 1,,2
  dec tok-decode-junk 2 --ids 1,x
  dec tok-decode-float 2 --ids 1.5
  dec tok-decode-empty 2 --ids ''
  d tok-train-vocab-wrap tokenizer 2 --vocab-size "$LOOM" tokenizer train --input "$W/corpus.txt" \
    --vocab-size 4294967297 --output "$f/t1"
  d tok-train-vocab-small tokenizer 2 --vocab-size "$LOOM" tokenizer train --input "$W/corpus.txt" \
    --vocab-size 256 --output "$f/t2"
  d tok-train-vocab-neg tokenizer 2 --vocab-size "$LOOM" tokenizer train --input "$W/corpus.txt" \
    --vocab-size -1 --output "$f/t3"
  d tok-train-min-freq-neg tokenizer 2 --min-frequency "$LOOM" tokenizer train \
    --input "$W/corpus.txt" --vocab-size 300 --min-frequency -1 --output "$f/t4"
  d tok-train-input-missing tokenizer '1|2' "$f/none.txt" "$LOOM" tokenizer train \
    --input "$f/none.txt" --vocab-size 300 --output "$f/t5"
  : >"$f/empty.txt"
  d tok-train-input-empty tokenizer '0|1' "" "$LOOM" tokenizer train --input "$f/empty.txt" \
    --vocab-size 300 --output "$f/t6"
  printf 'x' >"$f/outfile"
  d tok-train-output-is-file tokenizer '1|2' "$f/outfile" "$LOOM" tokenizer train \
    --input "$W/corpus.txt" --vocab-size 300 --output "$f/outfile"
  D_POST=post_jsonl_tok d tok-train-jsonl-documents tokenizer 0 "" "$LOOM" tokenizer train \
    --input "$W/docs.jsonl" --vocab-size 300 --output "$f/t7"
  d tok-train-jsonl-malformed tokenizer 1 "malformed.jsonl line 2" "$LOOM" tokenizer train \
    --input "$W/o/pre/malformed.jsonl" --vocab-size 300 --output "$f/t8"
}

post_tok_missing() {
  grep -q "WARN.*$W/o/tok/none.json\|W .*$W/o/tok/none.json" "$2" || { echo "no warning naming the file"; return 1; }
  [ ! -e "$W/o/tok-cfg1/checkpoints/step_00000008/vocab.json" ] || echo "the checkpoint carries a vocab.json"
}

# tokenizer train on JSONL learns the documents' text, not the JSON syntax ("text" is no token).
post_jsonl_tok() {
  ! grep -qF -e '"{\""' -e '"\"text' -e '"\":' "$W/o/tok/t7/vocab.json" || echo "vocab.json learned JSON syntax"
}

drills_tokenizer() {
  drills_tokenizer_files
  drills_tokenizer_numbers
}
