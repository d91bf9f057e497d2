#!/usr/bin/env bash
# Installs every Debian package Loom's build and tests need, plus any extra package names given as
# arguments; idempotent (installs only what is missing), works as root on a fresh Debian 12 (uses
# sudo otherwise). The CUDA toolkit is not a
# Debian package: when /usr/local/cuda/bin/nvcc exists the CUDA backend is built too.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-openmp-dev            # GEMM; the OpenMP build shares our thread pool
  libopenmpi-dev openmpi-bin        # multi-rank training and tests
  libhdf5-dev                       # checkpoints, token datasets, golden test data
  protobuf-compiler libprotobuf-dev # run configs
  libpcre2-dev                      # GPT-2 pre-tokenisation regex
  libicu-dev                        # NFC, case mapping, Unicode properties (tokenizer, templates)
  nlohmann-json3-dev                # tokenizer.json / vocab.json / JSONL
  libcli11-dev                      # the `loom` command line (header-only)
  libssl-dev                        # SHA-256 of checkpoint files (OpenSSL)
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-dev libomp-dev  # fuzz harnesses (libFuzzer; scripts/fuzz.sh)
  "$@"
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
