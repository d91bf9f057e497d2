// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-
// based generator. The output for (key, counter) is a pure function, so element i of a random
// tensor can be computed by any thread on any device and the result never depends on how work is
// split. Usable from host and CUDA code.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/util/Config.h"

namespace loom::philox {

struct U4 { uint32_t x[4]; };

LOOM_HOST_DEVICE inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

// 10 rounds of Philox4x32 on counter (c0..c3) with key (k0,k1).
LOOM_HOST_DEVICE inline U4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                      uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c0, hi0, lo0);
    mulhilo(kM1, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return U4{{c0, c1, c2, c3}};
}

// Four 32-bit words for 64-bit counter `ctr` under 64-bit `seed` (stream 0).
LOOM_HOST_DEVICE inline U4 random4(uint64_t seed, uint64_t ctr) {
  return philox4x32(uint32_t(ctr), uint32_t(ctr >> 32), 0u, 0u, uint32_t(seed),
                    uint32_t(seed >> 32));
}

// Uniform in [0,1) with 24 bits (float) or 53 bits from two words (double).
LOOM_HOST_DEVICE inline float u01_float(uint32_t w) { return float(w >> 8) * (1.0f / 16777216.0f); }
LOOM_HOST_DEVICE inline double u01_double(uint32_t w0, uint32_t w1) {
  uint64_t v = (uint64_t(w0) << 21) ^ uint64_t(w1 >> 11);
  return double(v & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Element i of a random stream: uniform(0,1) double built from counter (offset + i).
LOOM_HOST_DEVICE inline double uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  U4 r = random4(seed, offset + i);
  return u01_double(r.x[0], r.x[1]);
}

// Element i: standard normal via Box-Muller from the same counter's four words.
LOOM_HOST_DEVICE inline double normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
  U4 r = random4(seed, offset + i);
  double u1 = u01_double(r.x[0], r.x[1]);
  double u2 = u01_double(r.x[2], r.x[3]);
  u1 = u1 < 1e-300 ? 1e-300 : u1;  // log(0) guard
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace loom::philox
