// Shape and strides: small vectors of int64 with printing and helpers for contiguous strides,
// broadcasting and dim wrapping (negative dims count from the end, as in PyTorch).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "core/util/CheckedMath.h"

namespace loom {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "(2, 3, 4)"

// Number of elements. NB: shapes can come from files and headers, so the product is checked:
// a negative size or one that overflows int64 throws ValueError naming the shape.
inline int64_t shape_numel(const Shape& s) {
  std::optional<int64_t> n = try_numel(s);
  LOOM_CHECK(n.has_value(), "shape ", shape_str(s),
             ": expected sizes >= 0 whose product fits in int64");
  return *n;
}

inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// Wraps a possibly negative dim into [0, ndim); throws ValueError naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// NumPy broadcasting of two shapes; throws ValueError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace loom

namespace std {
inline ostream& operator<<(ostream& os, const loom::Shape& s) { return os << loom::shape_str(s); }
}  // namespace std
