// Shape and strides: small vectors of int64 with printing and helpers for contiguous strides,
// broadcasting and dim wrapping (negative dims count from the end, as in PyTorch).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace loom {

using Shape = std::vector<int64_t>;

inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
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

std::string shape_str(const Shape& s);  // "(2, 3, 4)"

// Wraps a possibly negative dim into [0, ndim); throws ValueError naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// NumPy broadcasting of two shapes; throws ValueError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace loom

namespace std {
inline ostream& operator<<(ostream& os, const loom::Shape& s) { return os << loom::shape_str(s); }
}  // namespace std
