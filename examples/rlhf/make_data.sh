#!/usr/bin/env bash
# Data for the RLHF example: single-digit addition "a+b=" -> "c" (checkable answers). Writes DIR/:
#   corpus.txt     pretraining text over all 100 pairs: answers right 45%, off by one 45%, else random
#   sft.jsonl      {prompt, response}: correct answers for half of the 80 training pairs
#   pref.jsonl     {prompt, chosen, rejected}: the right answer vs a wrong one, for every pair (the
#                  "human labels" of the reward model): NWRONG random wrong answers per prompt plus
#                  NEAR copies of each hard negative (c-2, c-1, c+1, c+2, c+10, c-10, the digits
#                  swapped, the first digit alone: the near misses a policy drifts to)
#   pref_val.jsonl the held-out preference pairs: 2 other wrong answers per prompt, drawn from
#                  0..18 and never a wrong answer of pref.jsonl for that prompt
#   prompts.jsonl  {prompt, answer}: RL prompts (the 80 training pairs); PPO reads the prompt only,
#                  GRPO's exact-match reward (pipeline_grpo.pbtxt) compares the response to answer
#   eval.tsv       every prompt <TAB> answer (true accuracy over the task)
#   eval_heldout.tsv  the 20 pairs that are in no SFT or PPO data
# Usage: make_data.sh DIR [SEED] [NWRONG] [NEAR]
set -euo pipefail
out=${1:?usage: make_data.sh DIR [SEED] [NWRONG] [NEAR]}
seed=${2:-1}
nwrong=${3:-10}  # random wrong answers per prompt in pref.jsonl
near=${4:-4}     # copies of every hard negative per prompt in pref.jsonl
mkdir -p "$out"
awk -v seed="$seed" -v nwrong="$nwrong" -v near="$near" -v out="$out" '
  # The preference data draws from its own stream (Park-Miller, exact in doubles), so its settings
  # leave the corpus and the SFT split unchanged.
  function prand() { pstate = (pstate * 16807) % 2147483647; return pstate / 2147483647 }
  function pair(file, p, c, w) {
    print "{\"prompt\":\"" p "\",\"chosen\":\"" c "\",\"rejected\":\"" w "\"}" > (out "/" file)
  }
  BEGIN {
  srand(seed)
  pstate = 1 + (seed * 7919) % 2147483646
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
    # Hard negatives first, then the 2 held-out wrong answers (not among them), then random ones.
    split("", hard); nh = 0
    cand[1] = c - 2; cand[2] = c - 1; cand[3] = c + 1; cand[4] = c + 2
    cand[5] = c + 10; cand[6] = c - 10
    cand[7] = (c >= 10) ? (c % 10) "" int(c / 10) : -1
    cand[8] = (c >= 10) ? int(c / 10) : -1
    for (k = 1; k <= 8; k++) {
      w = cand[k] ""
      if (cand[k] < 0 || w == c "" || (w in hard)) continue
      hard[w] = 1; nh++
      for (j = 0; j < near; j++) pair("pref.jsonl", p, c, w)
    }
    split("", val)
    for (k = 0; k < 2; k++) {
      do w = int(prand() * 19) ""; while (w == c "" || (w in hard) || (w in val))
      val[w] = 1
      pair("pref_val.jsonl", p, c, w)
    }
    for (k = 0; k < nwrong; k++) {
      do w = int(prand() * 19) ""; while (w == c "" || (w in val))
      pair("pref.jsonl", p, c, w)
    }
    if (held) continue
    print "{\"prompt\":\"" p "\",\"answer\":\"" c "\"}" > (out "/prompts.jsonl")
    if (rand() < 0.5) print "{\"prompt\":\"" p "\",\"response\":\"" c "\"}" > (out "/sft.jsonl")
  }
}'
