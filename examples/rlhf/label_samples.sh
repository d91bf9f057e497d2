#!/usr/bin/env bash
# Reward-model labels from the SFT model's own samples (the InstructGPT recipe: labellers rank
# samples of the SFT policy, so the reward model learns the mistakes PPO will actually explore).
# For every prompt of PROMPTS_JSONL, draws N samples at temperature 1 from CHECKPOINT with `loom
# generate`, checks each against ANSWERS_TSV (the same exact-match checker run.sh uses) and writes
# one preference pair {prompt, chosen: the right answer, rejected: the sample} per wrong sample to
# OUT_JSONL. Empty samples (a pair needs a non-empty response) and the rare ones with non-ASCII
# bytes (maybe not valid UTF-8, which JSON needs) are skipped. Prints a summary.
# Usage: label_samples.sh LOOM CHECKPOINT PROMPTS_JSONL ANSWERS_TSV N SEED OUT_JSONL
set -euo pipefail
[ $# -eq 7 ] || { echo "usage: $0 LOOM CHECKPOINT PROMPTS_JSONL ANSWERS_TSV N SEED OUT_JSONL" >&2; exit 2; }
loom=$1 ckpt=$2 prompts=$3 answers=$4 n=$5 seed=$6 out=$7
tmp="$out.tmp"
: > "$tmp"
i=0
# Prompts are {"prompt":"a+b=",...} lines written by make_data.sh (no quotes or escapes inside).
sed -n 's/^{"prompt":"\([^"]*\)".*$/\1/p' "$prompts" | while IFS= read -r prompt; do
  i=$((i + 1))
  "$loom" generate --checkpoint "$ckpt" --prompt "$prompt" --temperature 1 --max-new-tokens 3 \
    --num-samples "$n" --seed $((seed * 100003 + i)) |
    LC_ALL=C awk -v prompt="$prompt" -v answers="$answers" '
      BEGIN {
        while ((getline line < answers) > 0) { split(line, f, "\t"); ans[f[1]] = f[2] }
        for (c = 1; c < 32; c++) ctrl[sprintf("%c", c)] = sprintf("\\u%04x", c)
      }
      function json_escape(x,   out, k, ch) {
        out = ""
        for (k = 1; k <= length(x); k++) {
          ch = substr(x, k, 1)
          out = out (ch == "\\" ? "\\\\" : ch == "\"" ? "\\\"" : (ch in ctrl) ? ctrl[ch] : ch)
        }
        return out
      }
      # One sample: the text after the prompt, up to the end-of-text token; JSON-escaped.
      function flush() {
        if (!have) return
        s = substr(text, length(prompt) + 1)
        sub(/<\|endoftext\|>.*$/, "", s)
        have = 0
        if (s == "" || s ~ /[\200-\377]/) { empty++; return }  # no pair / not valid UTF-8
        if (s == ans[prompt]) { right++; return }
        printf "{\"prompt\":\"%s\",\"chosen\":\"%s\",\"rejected\":\"%s\"}\n", prompt, ans[prompt],
               json_escape(s)
        wrong++
      }
      /^--- sample [0-9]+ ---$/ { flush(); have = 1; text = ""; first = 1; next }
      { text = first ? $0 : text "\n" $0; first = 0 }
      END { flush(); printf "%d %d %d\n", right, wrong, empty > "/dev/stderr" }' \
    >> "$tmp" 2>> "$tmp.counts"
done
mv "$tmp" "$out"
awk '{ r += $1; w += $2; e += $3 } END {
  printf "label_samples: %d samples: %d right, %d wrong (-> %d pairs), %d empty or non-ASCII (skipped)\n",
         r + w + e, r, w, w, e }' "$tmp.counts"
rm -f "$tmp.counts"
