// Overflow-checked size arithmetic for sizes that come from input (config fields, file headers,
// dataset shapes, manifests): a product that does not fit in int64 is a user error naming what was
// being computed, never a wrapped value that later becomes a tiny allocation and a wild write.
//   int64_t bytes = checked_mul(numel, elem_size, "safetensors tensor 'w' bytes");
//   int64_t n = checked_numel(shape, "tensor 'w'");   // ValueError on a negative size or overflow
//   if (auto p = try_mul(a, b)) use(*p);              // no throw: std::nullopt on overflow
// The try_* forms are for code that reports problems itself (config validation lists every one).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/util/Check.h"

namespace loom {

inline std::optional<int64_t> try_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> try_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a * b; ValueError "<what>: <a> * <b> overflows int64" when it does not fit.
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  std::optional<int64_t> r = try_mul(a, b);
  LOOM_CHECK(r.has_value(), what, ": ", a, " * ", b, " overflows int64 (expected a size below ",
             INT64_MAX, ")");
  return *r;
}

// a + b; ValueError naming `what` when it does not fit.
inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  std::optional<int64_t> r = try_add(a, b);
  LOOM_CHECK(r.has_value(), what, ": ", a, " + ", b, " overflows int64 (expected a size below ",
             INT64_MAX, ")");
  return *r;
}

// Product of sizes, each >= 0; std::nullopt when one is negative or the product of the non-zero
// sizes overflows (so every contiguous stride of the shape fits in int64 too, even when a zero
// size makes the element count 0).
inline std::optional<int64_t> try_numel(std::span<const int64_t> sizes) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : sizes) {
    if (d < 0) return std::nullopt;
    if (d == 0) {
      empty = true;
      continue;
    }
    std::optional<int64_t> r = try_mul(n, d);
    if (!r) return std::nullopt;
    n = *r;
  }
  return empty ? 0 : n;
}

}  // namespace loom
