// Helpers for the CUDA-vs-CPU kernel tests (TESTPLAN G-1, ggml test-backend-ops style): random
// CPU inputs, copies to the GPU, normalised squared error, and the skip-without-GPU guard.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/backend/Backend.h"
#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"

namespace loom::gputest {

// fp32 bound from TESTPLAN G-1 / ggml test-backend-ops (NMSE <= 1e-7, TF32 off).
inline constexpr double kNmseF32 = 1e-7;
// bf16: one round-to-nearest of an output in [1,2) errs by at most 2^-9 (uniformly, so the mean
// squared relative error is ~(2^-9)^2/3 = 1.3e-6); inputs are pre-rounded for both backends, so the
// only extra error is intermediate roundings in the kernel. TESTPLAN G-1 fixes the bound at 5e-5.
inline constexpr double kNmseBf16 = 5e-5;

#define LOOM_REQUIRE_GPU()                                                               \
  do {                                                                                   \
    if (::loom::cuda_backend() == nullptr)                                               \
      GTEST_SKIP() << "no CUDA device: cuda_backend() is null (cudaGetDeviceCount "      \
                      "failed or returned 0, or Loom was built without nvcc)";           \
  } while (0)

inline Tensor gpu(const Tensor& t) { return t.contiguous().to(Device::cuda(0)); }
inline Tensor host(const Tensor& t) { return t.to(Device::cpu()); }

// Values representable in bf16 (so the CPU f32 reference and the bf16 GPU kernel see equal inputs).
inline Tensor bf16_exact(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

inline Tensor randn(const Shape& shape, uint64_t seed, double mean = 0.0, double std = 1.0) {
  Generator g(seed);
  return Tensor::randn(shape, g, DType::F32, Device::cpu(), mean, std);
}

// sum((a-b)^2) / sum(b^2) over all elements (both converted to f64 on the CPU).
inline double nmse(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape());
  std::vector<double> a = host(got).to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> b = host(want).to(DType::F64).contiguous().to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return num / den;
}

inline ::testing::AssertionResult nmse_le(const Tensor& got, const Tensor& want, double bound) {
  double e = nmse(got, want);
  if (e <= bound && !std::isnan(e)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "NMSE " << e << " > bound " << bound;
}

// Bitwise equality of two tensors' values (after moving both to the CPU as f64).
inline ::testing::AssertionResult equal_values(const Tensor& got, const Tensor& want) {
  std::vector<double> a = host(got).to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> b = host(want).to(DType::F64).contiguous().to_vector<double>();
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i]) && !(std::isnan(a[i]) && std::isnan(b[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
  }
  return ::testing::AssertionSuccess();
}

}  // namespace loom::gputest
