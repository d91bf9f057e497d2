#!/bin/sh
# Test checker that hangs: answers the first sample, then sleeps (in a child process) without
# answering the rest. The caller's timeout must kill both and reap them.
IFS= read -r line
echo '{"reward": 1}'
sleep 30
