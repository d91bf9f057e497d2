// The Llama family's ops: rms_norm, rope, swiglu and swiglu_linear. f64 gradcheck on contiguous,
// transposed and broadcast inputs; the fast CPU kernels against the reference kernels
// (ref/LlamaRef.h) on odd sizes; RoPE's inverse undoes it and RoPE's angles are what the formula
// says; RMSNorm's dweight does not depend on the thread count; swiglu_linear equals the
// composition it fuses. (Their end-to-end agreement with transformers is tests/models/
// LlamaFamilyTest.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/LlamaRef.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/ops/Reduction.h"
#include "core/ops/Rope.h"
#include "core/random/Generator.h"
#include "tests/support/GradCheck.h"

namespace loom {
namespace {

using testing::allclose;
using testing::gradcheck;

Tensor leaf(const Shape& s, Generator& gen) {
  return Tensor::randn(s, gen, DType::F64).set_requires_grad(true);
}

// cos/sin tables (T, D/2) of random angles (std 3 rad), no gradient.
std::pair<Tensor, Tensor> tables(int64_t T, int64_t half, Generator& gen,
                                 DType dt = DType::F64) {
  std::vector<double> a = Tensor::randn({T, half}, gen, DType::F64, Device::cpu(), 0.0, 3.0)
                              .to_vector<double>();
  std::vector<double> c(a.size()), s(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    c[i] = std::cos(a[i]);
    s[i] = std::sin(a[i]);
  }
  return {Tensor::from_vector(c, {T, half}).to(dt), Tensor::from_vector(s, {T, half}).to(dt)};
}

// ---- gradcheck (f64; PyTorch's default eps/atol/rtol from GradCheck.h) ----------------------

TEST(LlamaOpsGradTest, RmsNormWithWeightOnTransposedInputAndWithoutWeight) {
  Generator gen(11);
  auto affine = [](const std::vector<Tensor>& in) {
    return rms_norm(in[0].transpose(0, 1), in[1], 1e-6);  // (5,3) viewed as (3,5)
  };
  EXPECT_TRUE(gradcheck(affine, {leaf({5, 3}, gen), leaf({5}, gen)}));
  auto plain = [](const std::vector<Tensor>& in) { return rms_norm(in[0], Tensor(), 1e-5); };
  EXPECT_TRUE(gradcheck(plain, {leaf({2, 3, 4}, gen)}));
  // A broadcast (stride-0) row: every row the same leaf.
  auto bcast = [](const std::vector<Tensor>& in) {
    return rms_norm(in[0].expand({3, 6}), in[1], 1e-6);
  };
  EXPECT_TRUE(gradcheck(bcast, {leaf({1, 6}, gen), leaf({6}, gen)}));
}

TEST(LlamaOpsGradTest, RopeOnPermutedInput) {
  Generator gen(12);
  auto [c, s] = tables(3, 2, gen);
  auto fn = [c = c, s = s](const std::vector<Tensor>& in) {
    return rope(in[0].permute({0, 2, 1, 3}), c, s);  // (B,H,T,D) leaf seen as (B,T,H,D)
  };
  EXPECT_TRUE(gradcheck(fn, {leaf({2, 2, 3, 4}, gen)}));
}

TEST(LlamaOpsGradTest, SwigluOnTransposedAndBroadcastInputs) {
  Generator gen(13);
  auto t = [](const std::vector<Tensor>& in) { return swiglu(in[0].transpose(0, 1)); };
  EXPECT_TRUE(gradcheck(t, {leaf({6, 3}, gen)}));  // (3, 6): F = 3
  auto b = [](const std::vector<Tensor>& in) { return swiglu(in[0].expand({4, 8})); };
  EXPECT_TRUE(gradcheck(b, {leaf({1, 8}, gen)}));
}

TEST(LlamaOpsGradTest, SwigluLinearWithAndWithoutBias) {
  Generator gen(14);
  auto with_bias = [](const std::vector<Tensor>& in) {
    return swiglu_linear(in[0], in[1], in[2]);
  };
  EXPECT_TRUE(gradcheck(with_bias, {leaf({2, 3, 6}, gen), leaf({4, 3}, gen), leaf({4}, gen)}));
  auto no_bias = [](const std::vector<Tensor>& in) { return swiglu_linear(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(no_bias, {leaf({5, 4}, gen), leaf({3, 2}, gen)}));
}

// ---- semantics ------------------------------------------------------------------------------

// One position, one head, D = 4: [x0, x1, x2, x3] rotates the pairs (x0, x2) and (x1, x3).
TEST(LlamaOpsTest, RopeRotatesHalfPairsByTheTableAngles) {
  const double a0 = 0.3, a1 = -1.2;
  Tensor c = Tensor::from_vector<double>({std::cos(a0), std::cos(a1)}, {1, 2});
  Tensor s = Tensor::from_vector<double>({std::sin(a0), std::sin(a1)}, {1, 2});
  Tensor x = Tensor::from_vector<double>({1.0, 2.0, 3.0, 4.0}, {1, 1, 1, 4});
  std::vector<double> y = rope(x, c, s).to_vector<double>();
  const std::vector<double> want = {1.0 * std::cos(a0) - 3.0 * std::sin(a0),
                                    2.0 * std::cos(a1) - 4.0 * std::sin(a1),
                                    3.0 * std::cos(a0) + 1.0 * std::sin(a0),
                                    4.0 * std::cos(a1) + 2.0 * std::sin(a1)};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(y[i], want[i], 1e-15) << i;  // f64 rounding
}

TEST(LlamaOpsTest, RopeInverseUndoesRope) {
  Generator gen(15);
  auto [c, s] = tables(5, 3, gen);
  Tensor x = Tensor::randn({2, 5, 3, 6}, gen, DType::F64);
  Tensor y = Tensor::empty(x.shape(), DType::F64), back = Tensor::empty(x.shape(), DType::F64);
  backend_for(DeviceType::CPU).rope(y, x, c, s, false);
  backend_for(DeviceType::CPU).rope(back, y, c, s, true);
  EXPECT_TRUE(allclose(back, x, 1e-14, 1e-14));  // an orthogonal rotation and back, in f64
}

TEST(LlamaOpsTest, SwigluLinearEqualsTheComposition) {
  Generator gen(16);
  Tensor a = leaf({3, 5, 8}, gen), w = leaf({6, 4}, gen), b = leaf({6}, gen);
  Tensor fused = swiglu_linear(a, w, b);
  sum(fused * fused).backward();
  Tensor da = a.grad().clone(), dw = w.grad().clone(), db = b.grad().clone();
  for (Tensor* t : {&a, &w, &b}) t->set_grad(Tensor());
  Tensor plain = linear(swiglu(a), w, b);
  sum(plain * plain).backward();
  // The same kernels in the same order: equal to the last bit.
  EXPECT_EQ(fused.to_vector<double>(), plain.to_vector<double>());
  EXPECT_EQ(da.to_vector<double>(), a.grad().to_vector<double>());
  EXPECT_EQ(dw.to_vector<double>(), w.grad().to_vector<double>());
  EXPECT_EQ(db.to_vector<double>(), b.grad().to_vector<double>());
}

TEST(LlamaOpsTest, BadShapesAreValueErrors) {
  EXPECT_THROW(swiglu(Tensor::zeros({2, 5})), ValueError);                      // odd width
  EXPECT_THROW(rope(Tensor::zeros({1, 2, 1, 3}), Tensor::zeros({2, 1}), Tensor::zeros({2, 1})),
               ValueError);                                                      // odd D
  EXPECT_THROW(rope(Tensor::zeros({1, 2, 1, 4}), Tensor::zeros({3, 2}), Tensor::zeros({3, 2})),
               ValueError);                                                      // table rows
  EXPECT_THROW(rms_norm(Tensor::zeros({2, 4}), Tensor::ones({3})), ValueError);  // weight size
}

// ---- fast kernels vs reference kernels on odd sizes --------------------------------------

// Fast f32 vs the reference (double, one rounding): the fast kernels accumulate sums in double
// and round per-element terms in f32 (a few ulp, ~1e-7 relative, times terms of size ~1-10 for
// the rotations and RMSNorm's dx = rstd (g - xhat k)). Hence atol 2e-6, rtol 1e-5, as for the
// layer-norm kernels (NnTest.cpp). f64: summation-order and rounding differences only.
struct Tol {
  double atol, rtol;
};
Tol kernel_tol(DType dt) { return dt == DType::F32 ? Tol{2e-6, 1e-5} : Tol{1e-12, 1e-12}; }

using KernelCase = std::tuple<DType, int64_t, int64_t>;  // dtype, rows, cols
class LlamaKernelVsRef : public ::testing::TestWithParam<KernelCase> {
 protected:
  DType dt = std::get<0>(GetParam());
  int64_t rows = std::get<1>(GetParam()), cols = std::get<2>(GetParam());
  Tol tol = kernel_tol(dt);
  Generator gen{uint64_t(rows * 7919 + cols)};
  Backend& be = backend_for(DeviceType::CPU);
  Tensor randn(const Shape& s, double scale = 1.0) {
    return Tensor::randn(s, gen, dt, Device::cpu(), 0.0, scale);
  }
  Tensor empty(const Shape& s) { return Tensor::empty(s, dt); }
};

TEST_P(LlamaKernelVsRef, RmsNorm) {
  Tensor x = randn({rows, cols}, 2.0), w = randn({cols}), dy = randn({rows, cols});
  for (bool affine : {true, false}) {
    Tensor wt = affine ? w : Tensor();
    Tensor y = empty({rows, cols}), r = empty({rows}), yr = empty({rows, cols}), rr = empty({rows});
    be.rmsnorm_forward(y, r, x, wt, 1e-6);
    cpu::ref::rmsnorm_forward(yr, rr, x, wt, 1e-6);
    EXPECT_TRUE(allclose(y, yr, tol.atol, tol.rtol)) << "affine " << affine;
    EXPECT_TRUE(allclose(r, rr, tol.atol, tol.rtol));
    Tensor dx = empty({rows, cols}), dw = empty({cols});
    Tensor dxr = empty({rows, cols}), dwr = empty({cols});
    be.rmsnorm_backward(dx, affine ? dw : Tensor(), dy, x, wt, rr);
    cpu::ref::rmsnorm_backward(dxr, affine ? dwr : Tensor(), dy, x, wt, rr);
    EXPECT_TRUE(allclose(dx, dxr, tol.atol, tol.rtol)) << "affine " << affine;
    if (affine) {
      EXPECT_TRUE(allclose(dw, dwr, tol.atol, tol.rtol));
    }
  }
}

TEST_P(LlamaKernelVsRef, Swiglu) {
  Tensor a = randn({rows, 2 * cols}, 3.0), dy = randn({rows, cols});
  Tensor y = empty({rows, cols}), yr = empty({rows, cols});
  be.swiglu_forward(y, a);
  cpu::ref::swiglu_forward(yr, a);
  EXPECT_TRUE(allclose(y, yr, tol.atol, tol.rtol));
  Tensor da = empty({rows, 2 * cols}), dar = empty({rows, 2 * cols});
  be.swiglu_backward(da, dy, a);
  cpu::ref::swiglu_backward(dar, dy, a);
  EXPECT_TRUE(allclose(da, dar, tol.atol, tol.rtol));
}

TEST_P(LlamaKernelVsRef, Rope) {
  // rows = B*T positions over 3 heads of D = 2 * cols (cols even or odd: D/2 = cols).
  const int64_t B = 2, T = (rows + 1) / 2, H = 3, D = 2 * cols;
  Tensor x = randn({B, T, H, D});
  auto [c, s] = tables(T, cols, gen, dt);
  for (bool inverse : {false, true}) {
    Tensor y = empty(x.shape()), yr = empty(x.shape());
    be.rope(y, x, c, s, inverse);
    cpu::ref::rope(yr, x, c, s, inverse);
    EXPECT_TRUE(allclose(y, yr, tol.atol, tol.rtol)) << "inverse " << inverse;
  }
}

INSTANTIATE_TEST_SUITE_P(OddSizes, LlamaKernelVsRef,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F64),
                                            ::testing::Values(1, 3, 67),
                                            ::testing::Values(1, 7, 2053)),
                         [](const auto& info) {
                           return std::string(dtype_name(std::get<0>(info.param))) + "_r" +
                                  std::to_string(std::get<1>(info.param)) + "_c" +
                                  std::to_string(std::get<2>(info.param));
                         });

// dweight sums rows in fixed blocks, then the blocks in order: bitwise equal for 1 and 2 threads.
TEST(LlamaKernelTest, RmsNormWeightGradIsIndependentOfThreadCount) {
  Generator gen(17);
  const int64_t N = 300, C = 129;
  Tensor x = Tensor::randn({N, C}, gen), w = Tensor::randn({C}, gen);
  Tensor dy = Tensor::randn({N, C}, gen);
  Tensor y = Tensor::empty({N, C}), r = Tensor::empty({N});
  Backend& be = backend_for(DeviceType::CPU);
  be.rmsnorm_forward(y, r, x, w, 1e-5);
  const int saved = cpu::num_threads();
  std::vector<std::vector<float>> dws;
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    Tensor dx = Tensor::empty({N, C}), dw = Tensor::empty({C});
    be.rmsnorm_backward(dx, dw, dy, x, w, r);
    dws.push_back(dw.to_vector<float>());
  }
  cpu::set_num_threads(saved);
  EXPECT_EQ(dws[0], dws[1]);
}

}  // namespace
}  // namespace loom
