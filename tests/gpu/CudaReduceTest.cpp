// Whole-tensor CUDA reductions (issue 5 / helper Z): the grid-wide two-level path used for a few
// long rows (clip_grad_norm's sums) against the CPU backend, bitwise determinism across calls, the
// arg index of max/min, and its cost on a 124M-element tensor (printed, not asserted).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <iostream>

#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "tests/gpu/GpuCompare.h"

namespace loom {
namespace {

using gputest::equal_values;
using gputest::gpu;
using gputest::host;

TEST(CudaReduceTest, WholeTensorSumMatchesCpuAndIsDeterministic) {
  LOOM_REQUIRE_GPU();
  for (int64_t n : {int64_t(40000), int64_t(5'000'003), int64_t(70'000'001)}) {
    Tensor x = gputest::randn({n}, uint64_t(n));
    Tensor g = gpu(x);
    const double want = sum(x.to(DType::F64)).item();
    const double abs_sum = sum(abs(x.to(DType::F64))).item();
    const double got32 = sum(g).item();
    const double got64 = sum(g.to(DType::F64)).item();
    // Worst-case bound of blocked summation: (longest chain of additions) * unit roundoff * sum|x|.
    // The chain: <= 64 serial adds per thread + 8 shuffle/warp levels in a chunk, <= 16 partials
    // per thread + 8 levels in the combine: under 100.
    EXPECT_NEAR(got32, want, 100 * std::ldexp(1.0, -24) * abs_sum) << "n = " << n;
    EXPECT_NEAR(got64, want, 100 * std::ldexp(1.0, -53) * abs_sum) << "n = " << n;
    EXPECT_TRUE(equal_values(sum(g), sum(g))) << "n = " << n;  // bitwise reproducible
    EXPECT_TRUE(equal_values(sum(square(g.to(DType::F64))), sum(square(g.to(DType::F64)))));
  }
}

TEST(CudaReduceTest, FewLongRowsSumMaxMinMatchCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = gputest::randn({3, 200'001}, 7);
  Tensor g = gpu(x);
  // Row sums vs an f64 reference, within the blocked-summation worst case of the test above.
  Tensor want = sum(x.to(DType::F64), {1});
  Tensor abs_sum = sum(abs(x.to(DType::F64)), {1});
  Tensor got = host(sum(g, {1})).to(DType::F64);
  for (int64_t r = 0; r < 3; ++r) {
    EXPECT_NEAR(got.select(0, r).item(), want.select(0, r).item(),
                100 * std::ldexp(1.0, -24) * abs_sum.select(0, r).item()) << "row " << r;
  }
  Tensor ci, gi;
  Tensor cmax = max(x, 1, false, &ci), gmax = max(g, 1, false, &gi);
  EXPECT_TRUE(equal_values(gmax, cmax));  // max is exact
  EXPECT_TRUE(equal_values(gi, ci));      // same index (the lowest on ties)
  Tensor cmin = min(x, 1, false, &ci), gmin = min(g, 1, false, &gi);
  EXPECT_TRUE(equal_values(gmin, cmin));
  EXPECT_TRUE(equal_values(gi, ci));
}

TEST(CudaReduceTest, ArgmaxTiesPickTheLowestIndexAcrossChunks) {
  LOOM_REQUIRE_GPU();
  // Equal maxima in different chunks (chunk = 16384 elements): the first one must win.
  Tensor x = Tensor::zeros({1, 100'000}, DType::F32, Device::cpu());
  x.select(1, 70'000).fill_(5.0);
  x.select(1, 20'000).fill_(5.0);
  x.select(1, 90'000).fill_(5.0);
  Tensor idx = host(argmax(gpu(x), 1));
  EXPECT_EQ(idx.to(DType::F64).item(), 20'000.0);
}

TEST(CudaReduceTest, Gpt2SmallSizedSumOfSquaresTiming) {
  LOOM_REQUIRE_GPU();
  // clip_grad_norm's work for 124M parameters: f64 sum of squares of one 124M-element tensor.
  const int64_t n = 124'000'000;
  Tensor g = Tensor::ones({n}, DType::F32, Device::cuda(0));
  Tensor g64 = g.to(DType::F64);
  EXPECT_EQ(sum(square(g64)).item(), double(n));  // exact: integers in f64
  const int reps = 5;
  auto t0 = std::chrono::steady_clock::now();
  double s = 0;
  for (int i = 0; i < reps; ++i) s += sum(g64).item();
  auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(s, double(reps) * double(n));
  const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count() / reps;
  std::cout << "[ timing ] sum of 124M f64 on cuda: " << ms << " ms (incl. the host read)\n";
  RecordProperty("sum124m_f64_ms", std::to_string(ms));
}

}  // namespace
}  // namespace loom
