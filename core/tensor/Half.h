// 16-bit float storage types. Host code converts through float; the bit layout matches CUDA's
// __half / __nv_bfloat16 so device buffers can be reinterpreted in kernels.
#pragma once

#include <cstdint>
#include <cstring>

namespace loom {

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(from_float(f)) {}  // NOLINT: implicit like a float type
  operator float() const {                    // NOLINT
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {  // round to nearest even; NaN stays NaN
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return uint16_t((u + rounding) >> 16);
  }
};

struct Half {
  uint16_t bits = 0;
  Half() = default;
  Half(float f) : bits(from_float(f)) {}  // NOLINT
  operator float() const { return to_float(bits); }  // NOLINT
  static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
      if (man == 0) {
        u = sign;
      } else {  // subnormal: normalise
        int e = -1;
        do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
        u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
      }
    } else if (exp == 31) {
      u = sign | 0x7f800000u | man << 13;
    } else {
      u = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {  // round to nearest even
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);         // NaN
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);        // overflow -> inf
    if (abs < 0x38800000u) {                                        // subnormal or zero
      if (abs < 0x33000000u) return uint16_t(sign);
      uint32_t e = abs >> 23;
      uint32_t m = (abs & 0x7fffffu) | 0x800000u;
      // value = m * 2^(e-150); subnormal unit = 2^-24 -> q = m * 2^(e-126)
      uint32_t sh = 126 - e;
      uint32_t q = m >> sh;
      uint32_t rem = m & ((1u << sh) - 1);
      uint32_t halfway = 1u << (sh - 1);
      if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
      return uint16_t(sign | q);
    }
    uint32_t h = ((abs - 0x38000000u) >> 13);
    uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return uint16_t(sign | h);
  }
};

}  // namespace loom
