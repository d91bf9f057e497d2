#!/bin/sh
# Test checker with a bad second answer: `json` -> not JSON, `nan` -> Python's NaN (not JSON),
# `missing` -> no reward field, `string` -> a string reward. Answers 0 to anything after that.
IFS= read -r line
echo '{"reward": 0.5}'
IFS= read -r line
case "$1" in
  json) echo '{"reward": oops' ;;
  nan) echo '{"reward": NaN}' ;;
  missing) echo '{"score": 1}' ;;
  string) echo '{"reward": "1"}' ;;
esac
while IFS= read -r line; do
  echo '{"reward": 0}'
done
