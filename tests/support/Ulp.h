// f32 ulp distance for kernel accuracy tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace loom::testing {

// Distance in f32 ulps between a (fast) and the exact value b (double), measured at b's magnitude;
// subnormal results count in units of the smallest subnormal.
inline double ulp_error(float a, double b) {
  if (std::isnan(a) && std::isnan(b)) return 0.0;
  const double bf = double(float(b));  // results beyond FLT_MAX must round to +-inf
  if (std::isinf(bf) || std::isinf(a))
    return double(a) == bf ? 0.0 : std::numeric_limits<double>::infinity();
  double mag = std::max(std::fabs(b), double(std::numeric_limits<float>::min()));
  int e;
  std::frexp(mag, &e);
  double ulp = std::ldexp(1.0, e - 24);
  return std::fabs(double(a) - b) / ulp;
}

}  // namespace loom::testing
