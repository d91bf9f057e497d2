#!/usr/bin/env bash
# The RLHF example, start to finish: data (make_data.sh) -> tokenizer -> token dataset -> `loom
# pipeline`. ALGO=ppo (default): pipeline.pbtxt in two legs: pretrain -> sft; SFT samples labelled
# by the checker (label_samples.sh, InstructGPT's comparison data) -> reward -> ppo. ALGO=grpo:
# pipeline_grpo.pbtxt: pretrain -> sft -> grpo with a rule reward (exact match, no reward model).
# ALGO=required: the PPO path's data, then pipeline_required.pbtxt: a PPO and a GRPO stage with
# only their required fields (Loom's RL defaults otherwise).
# Then measures the true accuracy of SFT and the RL policy (greedy `loom generate`), the reward
# model's pairwise accuracy on held-out preference pairs (ppo) and the policy's KL to the SFT
# reference.
# Usage: [SEED=1] [ALGO=ppo|grpo|required] run.sh [WORK_DIR] [loom pipeline args...]
# (default WORK_DIR out/rlhf, out/rlhf-grpo for grpo, out/rlhf-required); resumes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
loom=${LOOM:-$root/build/bin/loom}
algo=${ALGO:-ppo}
case $algo in
  ppo) pipeline=$here/pipeline.pbtxt; default_work=$root/out/rlhf ;;
  grpo) pipeline=$here/pipeline_grpo.pbtxt; default_work=$root/out/rlhf-grpo ;;
  required) pipeline=$here/pipeline_required.pbtxt; default_work=$root/out/rlhf-required ;;
  *) echo "run.sh: expected ALGO ppo, grpo or required, got '$algo'" >&2; exit 2 ;;
esac
case $algo in  # the RL stages to evaluate
  required) rl_stages="ppo_required grpo_required" ;;
  *) rl_stages=$algo ;;
esac
work=${1:-$default_work}
shift || true
seed=${SEED:-1}  # data, model initialisation and sampling seed
mkdir -p "$work"
cd "$work"
start=$SECONDS

echo "== 1/4 data: single-digit addition, 20 of 100 pairs held out"
# (prompts.jsonl without "answer" fields: written before GRPO's rule reward; written again.)
grep -qs '"answer"' data/prompts.jsonl || "$here/make_data.sh" data "$seed" "${WRONG_PER_PROMPT:-10}" "${NEAR:-4}"
[ -s tok/merges.txt ] || "$loom" tokenizer train --input data/corpus.txt --vocab-size 270 --output tok
[ -s data/train.h5 ] || "$loom" preprocess --input data/corpus.txt --output data/train.h5 \
  --vocab tok/vocab.json --merges tok/merges.txt
# Labelled sample pairs minus the held-out preference pairs (they stay out of every training set).
held_out_removed() { grep -vxF -f data/pref_val.jsonl "$1" || true; }
if [ "$algo" = grpo ]; then
  echo "== 2/4 pipeline: pretrain -> sft -> grpo (exact-match reward)"
  "$loom" pipeline "$pipeline" --set seed="$seed" "$@"
else
  echo "== 2/4 pipeline: pretrain -> sft, SFT samples labelled by the checker, reward -> $rl_stages"
  "$loom" pipeline "$pipeline" --set seed="$seed" --until sft "$@"
  if [ ! -s data/pref_rm.jsonl ]; then
    "$here/label_samples.sh" "$loom" runs/sft/checkpoints data/prompts.jsonl data/eval.tsv \
      "${SAMPLES_PER_PROMPT:-16}" "$seed" data/pref_sft.jsonl
    cat data/pref.jsonl <(held_out_removed data/pref_sft.jsonl) > data/pref_rm.jsonl
  fi
  "$loom" pipeline "$pipeline" --set seed="$seed" "$@"
fi

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
first_mean() {  # mean of the first N values of a metric
  grep -o "\"$2\": [-0-9.eE+na]*" "$1" | head -n "$3" | awk '{ s += $2 } END { printf "%.4f", s / NR }'
}
sft_acc=$(accuracy runs/sft/checkpoints data/eval.tsv)
sft_held=$(accuracy runs/sft/checkpoints data/eval_heldout.tsv)
results=()
for st in $rl_stages; do
  rl=${st^^}  # PPO, GRPO, PPO_REQUIRED, GRPO_REQUIRED
  results+=("$(printf '%-52s %s' "$rl true accuracy (all 100 prompts):" \
                 "$(accuracy "runs/$st/checkpoints" data/eval.tsv)")"
            "SFT / $rl true accuracy (20 prompts in no SFT or RL data): $sft_held / $(accuracy "runs/$st/checkpoints" data/eval_heldout.tsv)"
            "$st: score_mean first / last 10 iterations: $(first_mean "runs/$st/metrics.jsonl" score_mean 10) / $(mean_last "runs/$st/metrics.jsonl" score_mean 10); KL to the SFT reference, last 10: $(mean_last "runs/$st/metrics.jsonl" kl 10)")
done
echo "== 4/4 results ($((SECONDS - start)) s)"
if [ "$algo" != grpo ]; then
  echo "reward: pairwise accuracy / mean margin, 200 held-out pairs: $(last_metric runs/reward/metrics.jsonl val_accuracy) / $(last_metric runs/reward/metrics.jsonl val_margin)"
fi
printf '%-52s %s\n' "SFT true accuracy (all 100 prompts):" "$sft_acc"
printf '%s\n' "${results[@]}"
