#!/usr/bin/env bash
# The Quickstart's main job, start to finish: corpus -> BPE tokenizer -> HDF5 token dataset ->
# pretraining with evaluation and checkpoints -> samples. Usage: run.sh [WORK_DIR] [loom args...]
# (default WORK_DIR out/quickstart; extra args go to `loom train`, e.g. --set max_steps=100).
# Re-running resumes training from the newest checkpoint and skips finished steps.
# RANKS=N runs step 4 on N local ranks through `loom launch` (e.g. RANKS=4 ... --set parallel.tp=2
# for TP=2 x DP=2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
loom=${LOOM:-$root/build/bin/loom}
work=${1:-$root/out/quickstart}
shift || true
mkdir -p "$work"
cd "$work"

echo "== 1/5 corpus (Debian package fortunes)"
[ -s corpus.jsonl ] || "$here/make_corpus.sh" .
echo "== 2/5 tokenizer: byte-level BPE, 4096 tokens, trained on the corpus"
[ -s tokenizer/merges.txt ] || "$loom" tokenizer train --input corpus.txt --vocab-size 4096 --output tokenizer
echo "== 3/5 token dataset with a 5% validation split"
[ -s data/train.h5 ] || "$loom" preprocess --input corpus.jsonl --output data/train.h5 \
  --val-fraction 0.05 --vocab tokenizer/vocab.json --merges tokenizer/merges.txt
echo "== 4/5 pretraining (metrics: $work/run/metrics.jsonl, TensorBoard: $work/run/tensorboard)"
if [ -n "${RANKS:-}" ]; then
  "$loom" launch -n "$RANKS" "$here/config.pbtxt" "$@"
else
  "$loom" train "$here/config.pbtxt" "$@"
fi
echo "== 5/5 samples from the trained model"
for prompt in "The meaning of life is" "A computer" "Q: Why did the chicken"; do
  "$loom" generate --checkpoint run/checkpoints --prompt "$prompt" --max-new-tokens 40 \
    --temperature 0.8 --top-k 40 --seed 1
  echo "--"
done
