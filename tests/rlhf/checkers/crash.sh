#!/bin/sh
# Test checker that dies: answers the first sample, reads the second, then `crash.sh exit` exits
# with status 3 and `crash.sh signal` kills itself with SIGTERM.
IFS= read -r line
echo '{"reward": 1}'
IFS= read -r line
if [ "$1" = signal ]; then
  kill -TERM $$
fi
exit 3
