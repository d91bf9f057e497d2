#!/usr/bin/env bash
# Regenerates every golden file in tests/golden/ with PyTorch (CPU). Needs the Python environment
# from scripts/setup-python.sh; the C++ tests only read the committed outputs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${LOOM_PYTHON:-$here/../../.venv/bin/python}
for g in "$here"/gen_*.py; do
  echo "== $g"
  "$py" "$g"
done
