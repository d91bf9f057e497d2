#!/usr/bin/env bash
# Builds the example's corpus from Debian's `fortunes` package (about 15,000 short English texts,
# 2.6 MB): corpus.txt (all text, for training the tokenizer) and corpus.jsonl (one {"text": ...}
# document per fortune, for `loom preprocess`). Usage: make_corpus.sh OUT_DIR
# FORTUNES_DIR reads another directory of fortune files (the docs test's tiny stand-in).
set -euo pipefail
out=${1:?usage: make_corpus.sh OUT_DIR}
src=${FORTUNES_DIR:-/usr/share/games/fortunes}
mkdir -p "$out"
files=$(find "$src" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort)
# shellcheck disable=SC2086
cat $files > "$out/corpus.txt"
# Fortunes are separated by lines holding a single '%'. JSON-escape each one; control characters
# (old terminal backspace tricks) are dropped.
# shellcheck disable=SC2086
awk 'function esc(s) {
       gsub(/[\001-\010\013\014\016-\037\177]/, "", s); gsub(/\\/, "\\\\\\\\", s)
       gsub(/"/, "\\\"", s); gsub(/\t/, "\\\\t", s); gsub(/\r/, "", s); return s }
     function emit() { if (doc != "") print "{\"text\": \"" doc "\"}"; doc = "" }
     FNR == 1 { emit() }
     /^%$/ { emit(); next }
     { doc = (doc == "" ? esc($0) : doc "\\n" esc($0)) }
     END { emit() }' $files > "$out/corpus.jsonl"
echo "corpus: $(wc -l < "$out/corpus.jsonl") documents, $(wc -c < "$out/corpus.txt") bytes in $out"
