#!/usr/bin/env bash
# Data for the RLHF example: single-digit addition "a+b=" -> "c" (checkable answers). Writes DIR/:
#   corpus.txt     pretraining text over all 100 pairs: answers right 45%, off by one 45%, else random
#   sft.jsonl      {prompt, response}: correct answers for half of the 80 training pairs
#   pref.jsonl     {prompt, chosen, rejected}: the right answer vs a wrong one, for every pair (the
#                  "human labels" of the reward model), all but the last 2 wrong answers per prompt
#   pref_val.jsonl the held-out preference pairs: the last 2 wrong answers of every prompt
#   prompts.jsonl  {prompt}: PPO prompts (the 80 training pairs)
#   eval.tsv       every prompt <TAB> answer (true accuracy over the task)
#   eval_heldout.tsv  the 20 pairs that are in no SFT or PPO data
# Usage: make_data.sh DIR [SEED] [WRONG_PER_PROMPT]
set -euo pipefail
out=${1:?usage: make_data.sh DIR [SEED] [WRONG_PER_PROMPT]}
seed=${2:-1}
nwrong=${3:-6}  # wrong answers per prompt in the preference data
mkdir -p "$out"
awk -v seed="$seed" -v nwrong="$nwrong" -v out="$out" 'BEGIN {
  srand(seed)
  for (a = 0; a < 10; a++) for (b = 0; b < 10; b++) {
    held = ((a * 7 + b * 3) % 5 == 0)
    p = a "+" b "="; c = a + b
    # Pretraining text covers every pair (it is the "web text"): the right sum 45% of the time,
    # the sum plus one 45% (a common mistake in this corpus), anything else 10%.
    for (k = 0; k < 20; k++) {
      u = rand()
      w = (u < 0.45) ? c : (u < 0.9) ? c + 1 : int(rand() * 19)
      print p w > (out "/corpus.txt")
    }
    print p "\t" c > (out "/eval.tsv")
    if (held) print p "\t" c > (out "/eval_heldout.tsv")
    for (k = 0; k < nwrong; k++) {
      w = c + 1
      if (k > 0) { w = c; while (w == c) w = int(rand() * 19) }
      line = "{\"prompt\":\"" p "\",\"chosen\":\"" c "\",\"rejected\":\"" w "\"}"
      print line > (out "/" (k >= nwrong - 2 ? "pref_val.jsonl" : "pref.jsonl"))
    }
    if (held) continue
    print "{\"prompt\":\"" p "\"}" > (out "/prompts.jsonl")
    if (rand() < 0.5) print "{\"prompt\":\"" p "\",\"response\":\"" c "\"}" > (out "/sft.jsonl")
  }
}'
