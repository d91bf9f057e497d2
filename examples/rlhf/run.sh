#!/usr/bin/env bash
# The RLHF example, start to finish: data (make_data.sh) -> tokenizer -> token dataset -> `loom
# pipeline pipeline.pbtxt` (pretrain -> sft -> reward -> ppo) -> measurements on the 20 held-out
# addition prompts: true accuracy of the SFT and PPO models (greedy `loom generate`), the reward
# model's pairwise accuracy on held-out preference pairs and PPO's KL to the reference.
# Usage: run.sh [WORK_DIR] [loom pipeline args...]   (default WORK_DIR out/rlhf). Re-running resumes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
loom=${LOOM:-$root/build/bin/loom}
work=${1:-$root/out/rlhf}
shift || true
mkdir -p "$work"
cd "$work"
start=$SECONDS

echo "== 1/4 data: single-digit addition, 20 of 100 pairs held out"
[ -s data/eval.tsv ] || "$here/make_data.sh" data
[ -s tok/merges.txt ] || "$loom" tokenizer train --input data/corpus.txt --vocab-size 270 --output tok
[ -s data/train.h5 ] || "$loom" preprocess --input data/corpus.txt --output data/train.h5 \
  --vocab tok/vocab.json --merges tok/merges.txt
echo "== 2/4 pipeline: pretrain -> sft -> reward -> ppo"
"$loom" pipeline "$here/pipeline.pbtxt" "$@"

# Greedy answers of a checkpoint to every held-out prompt; prints the accuracy in percent.
accuracy() {  # accuracy CHECKPOINT TSV
  local ckpt=$1 right=0 total=0 prompt answer got
  while IFS=$'\t' read -r prompt answer; do
    got=$("$loom" generate --checkpoint "$ckpt" --prompt "$prompt" --temperature 0 \
            --max-new-tokens 4 | head -n 1)
    got=${got#"$prompt"}
    got=${got%"<|endoftext|>"}
    total=$((total + 1))
    [ "$got" = "$answer" ] && right=$((right + 1))
  done < "$2"
  awk -v r="$right" -v t="$total" 'BEGIN { printf "%.1f%% (%d/%d)", 100 * r / t, r, t }'
}
# The last value of a metric in a metrics.jsonl.
last_metric() {
  grep -o "\"$2\": [-0-9.eE+na]*" "$1" | tail -n 1 | awk '{ print $2 }'
}
mean_last() {  # mean of the last N values of a metric
  grep -o "\"$2\": [-0-9.eE+na]*" "$1" | tail -n "$3" | awk '{ s += $2 } END { printf "%.4f", s / NR }'
}

echo "== 3/4 held-out evaluation"
sft_acc=$(accuracy runs/sft/checkpoints data/eval.tsv)
ppo_acc=$(accuracy runs/ppo/checkpoints data/eval.tsv)
sft_held=$(accuracy runs/sft/checkpoints data/eval_heldout.tsv)
ppo_held=$(accuracy runs/ppo/checkpoints data/eval_heldout.tsv)
echo "== 4/4 results ($((SECONDS - start)) s)"
echo "reward model pairwise accuracy (held-out pairs): $(last_metric runs/reward/metrics.jsonl val_accuracy)"
echo "reward model mean margin (held-out pairs):       $(last_metric runs/reward/metrics.jsonl val_margin)"
echo "SFT true accuracy (all 100 prompts):             $sft_acc"
echo "PPO true accuracy (all 100 prompts):             $ppo_acc"
echo "SFT / PPO true accuracy (20 prompts in no SFT or PPO data): $sft_held / $ppo_held"
echo "PPO score_mean, first / last 10 iterations:      $(grep -o '"score_mean": [-0-9.eE+]*' runs/ppo/metrics.jsonl | head -n 10 | awk '{ s += $2 } END { printf "%.4f", s / NR }') / $(mean_last runs/ppo/metrics.jsonl score_mean 10)"
echo "PPO KL to the reference, last 10 iterations:     $(mean_last runs/ppo/metrics.jsonl kl 10)"
