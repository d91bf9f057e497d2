// TensorParallelRng: the two dropout streams of a tensor-parallel rank (Megatron's "model-parallel
// RNG tracker", as an explicit object instead of global state). Outside TP regions activations are
// replicated, so their dropout masks must be equal on every TP rank: replicated() uses the run's
// seed. Inside TP regions (e.g. attention probabilities of this rank's heads) each rank holds a
// different slice, whose masks must be independent: tensor_parallel() uses a Philox key derived
// from (seed, tp_rank). Both are plain Generators, so masks are reproducible from the state.
//   TensorParallelRng rng(1234, grid.tp_rank());
//   Tensor a = dropout(att, p, rng.tensor_parallel());   // local heads: differs across TP ranks
//   Tensor y = dropout(out, p, rng.replicated());        // after reduce_from_tp: equal everywhere
#pragma once

#include <cstdint>

#include "core/random/Generator.h"

namespace loom::tp {

class TensorParallelRng {
 public:
  TensorParallelRng(uint64_t seed, int tp_rank);

  // Key derived from (seed, tp_rank): distinct across ranks (a bijective mix of the rank) and
  // independent of the replicated stream.
  static uint64_t tensor_parallel_seed(uint64_t seed, int tp_rank);

  Generator& replicated() { return replicated_; }
  Generator& tensor_parallel() { return tensor_parallel_; }

  // Checkpointable state: restoring it reproduces every later mask bitwise.
  struct State {
    uint64_t seed = 0;
    uint64_t replicated_offset = 0;
    uint64_t tensor_parallel_offset = 0;
  };
  State state() const;
  void set_state(const State& s);
  int tp_rank() const { return tp_rank_; }

 private:
  uint64_t seed_;
  int tp_rank_;
  Generator replicated_;
  Generator tensor_parallel_;
};

}  // namespace loom::tp
