#!/bin/sh
# Test checker that prints the wrong number of lines: `more` answers every sample twice (both
# lines in one write), `fewer` answers only the first sample, reads the second and exits 0.
case "$1" in
  more)
    while IFS= read -r line; do
      printf '{"reward": 1}\n{"reward": 2}\n'
    done
    ;;
  fewer)
    IFS= read -r line
    echo '{"reward": 1}'
    IFS= read -r line
    exit 0
    ;;
esac
