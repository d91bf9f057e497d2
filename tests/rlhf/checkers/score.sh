#!/bin/sh
# Test checker for CommandRewardTest (JSONL reward protocol, rlhf/CommandReward.h): reward 1 when
# the response is "4" and the record's answer field is "4", -0.25 when the response is "neg", else
# 0. Logs every input line to stderr (to test that stderr is forwarded or written to a file).
while IFS= read -r line; do
  printf 'score.sh: %s\n' "$line" >&2
  case "$line" in
    *'"response":"4"'*'"answer":"4"'*) echo '{"reward": 1}' ;;
    *'"response":"neg"'*) echo '{"reward": -2.5e-1}' ;;
    *) echo '{"reward": 0}' ;;
  esac
done
