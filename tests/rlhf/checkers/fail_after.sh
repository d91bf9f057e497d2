#!/bin/sh
# Test checker for the RL stage (RlCheckerStageTest): answers each of the first N lines with a
# reward that varies with the sample, the length of its JSON line modulo 5 (so the samples of a
# group differ); after line N `ok` keeps answering, `crash` exits with status 3, `hang` sleeps
# past any test timeout, `malformed` answers a line that is not JSON. Usage: fail_after.sh MODE N
n=0
while IFS= read -r line; do
  n=$((n + 1))
  if [ "$n" -gt "$2" ]; then
    case "$1" in
      crash) exit 3 ;;
      hang) sleep 30 ;;
      malformed) echo 'reward: 1'; continue ;;
    esac
  fi
  echo "{\"reward\": $((${#line} % 5))}"
done
