// set_blas_kernels: OpenBLAS's kernel dispatch can be re-run at start-up ("auto" or a named set),
// an unknown name is a ValueError, and GEMM results stay right after a switch.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/backend/cpu/CpuBackend.h"
#include "core/ops/Linear.h"
#include "core/util/Check.h"

namespace loom::cpu {
namespace {

// (M,K)@(K,N) with small integers: exact in f32 whatever the kernel's summation order.
void expect_exact_matmul() {
  const int64_t M = 37, K = 53, N = 29;
  std::vector<float> a(size_t(M * K)), b(size_t(K * N));
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 7) - 3);
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(int(i % 5) - 2);
  Tensor c = matmul(Tensor::from_vector(a, {M, K}), Tensor::from_vector(b, {K, N}));
  const float* pc = c.data<float>();
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double want = 0.0;
      for (int64_t k = 0; k < K; ++k) want += double(a[size_t(i * K + k)]) * b[size_t(k * N + j)];
      ASSERT_EQ(pc[i * N + j], float(want)) << i << "," << j;
    }
}

TEST(CpuBlasTest, SwitchingKernelSetsKeepsGemmExact) {
  the_cpu_backend();
  const std::string start = blas_kernels_name();
  set_blas_kernels("auto");
  EXPECT_STRNE(blas_kernels_name(), "unknown");
  expect_exact_matmul();
  set_blas_kernels("Haswell");  // AVX2 kernels: available on every CPU this project targets
  EXPECT_STREQ(blas_kernels_name(), "Haswell");
  expect_exact_matmul();
  set_blas_kernels(start);
  EXPECT_EQ(std::string(blas_kernels_name()), start);
}

TEST(CpuBlasTest, UnknownKernelSetIsValueError) {
  the_cpu_backend();
  const std::string start = blas_kernels_name();
  EXPECT_THROW(set_blas_kernels("NoSuchCore"), ValueError);
  EXPECT_THROW(set_blas_kernels(""), ValueError);
  set_blas_kernels(start);
}

}  // namespace
}  // namespace loom::cpu
