// TensorParallelRng (TensorParallelRng.h): seed derivation and state save/restore.
#include "parallel/tensor/TensorParallelRng.h"

#include "core/util/Check.h"

namespace loom::tp {

namespace {

// splitmix64 finaliser: a bijection on 64-bit words with good avalanche.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kTensorParallelSalt = 0x7470726E67ull;  // "tprng"

}  // namespace

uint64_t TensorParallelRng::tensor_parallel_seed(uint64_t seed, int tp_rank) {
  LOOM_CHECK(tp_rank >= 0, "TensorParallelRng: expected tp_rank >= 0, got ", tp_rank);
  // NB: mix64 is a bijection, so different ranks always get different keys.
  return mix64(mix64(seed ^ kTensorParallelSalt) + uint64_t(tp_rank));
}

TensorParallelRng::TensorParallelRng(uint64_t seed, int tp_rank)
    : seed_(seed),
      tp_rank_(tp_rank),
      replicated_(seed),
      tensor_parallel_(tensor_parallel_seed(seed, tp_rank)) {}

TensorParallelRng::State TensorParallelRng::state() const {
  return State{seed_, replicated_.offset(), tensor_parallel_.offset()};
}

void TensorParallelRng::set_state(const State& s) {
  seed_ = s.seed;
  replicated_.set_state(s.seed, s.replicated_offset);
  tensor_parallel_.set_state(tensor_parallel_seed(s.seed, tp_rank_), s.tensor_parallel_offset);
}

}  // namespace loom::tp
