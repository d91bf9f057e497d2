// The AVX2 vector math (core/backend/cpu/VecMath.h: exp, tanh, sigmoid) against std:: in f32 ulps
// over a wide sweep plus special values. Built only with LOOM_AVX2=ON (the portable build has no
// vector math).
#include <gtest/gtest.h>

#include <immintrin.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <vector>

#include "core/backend/cpu/VecMath.h"
#include "tests/support/Ulp.h"

namespace loom {
namespace {

using testing::ulp_error;

// ---- vectorised exp / tanh vs std:: (f32) ----------------------------------------------------------

std::vector<float> special_and_sweep_inputs() {
  std::vector<float> v = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, -1e-8f, 1e-45f, 0.5f, -0.625f,
                          0.625f, 0.62499994f, 88.0f, 88.72f, 88.73f, 89.0f, 100.0f, -87.3f,
                          -100.0f, -103.9f, -104.5f, -200.0f, 9.0f, -9.0f, 20.0f, -20.0f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()};
  for (int i = -200000; i <= 200000; ++i) v.push_back(float(i) * 5.3e-4f);  // [-106, 106]
  for (int e = -40; e <= 6; ++e)
    for (float m : {1.0f, 1.37f, -1.0f, -1.91f}) v.push_back(m * std::ldexp(1.0f, e));
  return v;
}

template <class VecF, class StdF>
double worst_ulps(const std::vector<float>& in, VecF vf, StdF sf) {
  double worst = 0.0;
  for (size_t i = 0; i + 8 <= in.size(); i += 8) {
    alignas(32) float out[8];
    _mm256_store_ps(out, vf(_mm256_loadu_ps(in.data() + i)));
    for (int k = 0; k < 8; ++k) {
      double err = ulp_error(out[k], sf(double(in[i + size_t(k)])));
      EXPECT_FALSE(std::isinf(err)) << "at x = " << in[i + size_t(k)] << " got " << out[k];
      worst = std::max(worst, err);
    }
  }
  return worst;
}

TEST(VecMathTest, ExpAndTanhWithinFewUlpsOfStd) {
  std::vector<float> in = special_and_sweep_inputs();
  while (in.size() % 8) in.push_back(0.0f);
  double e = worst_ulps(in, [](__m256 v) { return cpu::vec::exp(v); },
                        [](double x) { return std::exp(x); });
  double t = worst_ulps(in, [](__m256 v) { return cpu::vec::tanh(v); },
                        [](double x) { return std::tanh(x); });
  double s = worst_ulps(in, [](__m256 v) { return cpu::vec::sigmoid(v); },
                        [](double x) { return 1.0 / (1.0 + std::exp(-x)); });
  // Cephes' expf/tanhf polynomials are documented at ~1-2 ulp; our range reduction and two-step
  // scaling add at most one rounding each. Bounds: 3 ulp (exp, tanh), 4 ulp (sigmoid adds an add
  // and a divide).
  EXPECT_LE(e, 3.0);
  EXPECT_LE(t, 3.0);
  EXPECT_LE(s, 4.0);
  std::cout << "worst ulps: exp " << e << " tanh " << t << " sigmoid " << s << "\n";
}

}  // namespace
}  // namespace loom
