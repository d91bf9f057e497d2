// Generator: (seed, offset) state of a Philox stream. Each random op reserves `n` counters with
// next_offset(n); saving and restoring {seed, offset} reproduces every later draw bitwise.
//   Generator gen(1234);
//   Tensor w = Tensor::randn({768, 768}, gen);   // uses counters [0, 768*768)
#pragma once

#include <cstdint>

namespace loom {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Returns the first counter of a fresh block of n counters.
  uint64_t next_offset(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }

 private:
  uint64_t seed_;
  uint64_t offset_;
};

}  // namespace loom
