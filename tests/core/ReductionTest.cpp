// Reductions: sum/mean/max/min/argmax over single and multiple dims with keepdim both ways,
// sum_to, gradcheck, thread-count independence of sums (bitwise), accuracy of f32 sums, fast
// kernel vs the reference kernel, and error messages. TESTPLAN U1/U2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/ElementwiseRef.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "tests/support/GradCheck.h"
#include "tests/support/Golden.h"

namespace loom {
namespace {

using testing::allclose;
using testing::gradcheck;

Tensor iota(const Shape& s) {
  std::vector<double> v(size_t(shape_numel(s)));
  std::iota(v.begin(), v.end(), 0.0);
  return Tensor::from_vector(v, s);
}

TEST(ReductionTest, SumOverDimsWithAndWithoutKeepdim) {
  Tensor x = iota({2, 3, 4});  // x[i][j][k] = 12 i + 4 j + k
  EXPECT_EQ(sum(x).item(), 276.0);
  EXPECT_EQ(sum(x).dim(), 0);
  Tensor s1 = sum(x, {1});
  EXPECT_EQ(s1.shape(), (Shape{2, 4}));
  EXPECT_EQ(s1.to_vector<double>(), (std::vector<double>{12, 15, 18, 21, 48, 51, 54, 57}));
  Tensor s1k = sum(x, {1}, true);
  EXPECT_EQ(s1k.shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(s1k.to_vector<double>(), s1.to_vector<double>());
  Tensor s02 = sum(x, {0, 2});  // non-adjacent dims
  EXPECT_EQ(s02.shape(), (Shape{3}));
  EXPECT_EQ(s02.to_vector<double>(), (std::vector<double>{60, 92, 124}));
  EXPECT_EQ(sum(x, {-1, 0}, true).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(sum(x, {2}).to_vector<double>(),
            (std::vector<double>{6, 22, 38, 54, 70, 86}));
  EXPECT_EQ(sum(x.transpose(0, 2), {0}).to_vector<double>(),
            (std::vector<double>{6, 54, 22, 70, 38, 86}));
}

TEST(ReductionTest, MeanMaxMinArgmax) {
  Tensor x = Tensor::from_vector<double>({3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}, {3, 4});
  EXPECT_EQ(mean(x).item(), 52.0 / 12.0);
  EXPECT_EQ(mean(x, {0}).to_vector<double>(), (std::vector<double>{13 / 3.0, 13 / 3.0, 11 / 3.0, 5}));
  EXPECT_EQ(mean(x, {1}, true).shape(), (Shape{3, 1}));
  Tensor idx;
  Tensor mx = max(x, 1, false, &idx);
  EXPECT_EQ(mx.to_vector<double>(), (std::vector<double>{4, 9, 8}));
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 3}));
  Tensor mn = min(x, 0, true, &idx);
  EXPECT_EQ(mn.shape(), (Shape{1, 4}));
  EXPECT_EQ(mn.to_vector<double>(), (std::vector<double>{3, 1, 2, 1}));
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0}));
  EXPECT_EQ(max(x).item(), 9.0);
  EXPECT_EQ(argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_TRUE(std::isnan(mean(Tensor::zeros({0}, DType::F64)).item()));
}

TEST(ReductionTest, MaxPropagatesNaN) {
  double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = Tensor::from_vector<double>({1, nan, 3, nan}, {4});
  Tensor idx;
  EXPECT_TRUE(std::isnan(max(x, 0, false, &idx).item()));
  EXPECT_EQ(idx.item(), 1.0);
}

TEST(ReductionTest, SumToReversesBroadcasting) {
  Tensor x = iota({2, 3, 4});
  EXPECT_EQ(sum_to(x, {4}).to_vector<double>(), (std::vector<double>{60, 66, 72, 78}));
  EXPECT_EQ(sum_to(x, {3, 1}).to_vector<double>(), (std::vector<double>{60, 92, 124}));
  EXPECT_EQ(sum_to(x, {2, 1, 1}).to_vector<double>(), (std::vector<double>{66, 210}));
  EXPECT_EQ(sum_to(x, {}).item(), 276.0);
  EXPECT_TRUE(sum_to(x, {2, 3, 4}).is_same(x));
}

TEST(ReductionTest, IntegerSums) {
  Tensor x = Tensor::from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(sum(x, {1}).to_vector<int64_t>(), (std::vector<int64_t>{6, 15}));
  EXPECT_EQ(max(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{4, 5, 6}));
}

TEST(ReductionTest, Errors) {
  EXPECT_THROW(sum(Tensor::ones({2, 3}), {2}), ValueError);
  EXPECT_THROW(sum(Tensor::ones({2, 3}), {1, -1}), ValueError);
  EXPECT_THROW(max(Tensor::ones({0, 3}), 0), ValueError);
  EXPECT_THROW(sum(Tensor::ones({2}, DType::Bool)), ValueError);
}

// ---- gradcheck (TESTPLAN U2 defaults) ------------------------------------------------------------

TEST(ReductionGradTest, SumMeanOverDims) {
  Generator gen(5);
  Tensor x = Tensor::randn({2, 3, 4}, gen, DType::F64).set_requires_grad(true);
  auto check = [&](const std::function<Tensor(const Tensor&)>& f) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x}));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return f(in[0].transpose(0, 2).transpose(0, 2)
                                                          .permute({0, 1, 2})); },
        {x}));
  };
  check([](const Tensor& t) { return sum(t); });
  check([](const Tensor& t) { return sum(t, {1}); });
  check([](const Tensor& t) { return sum(t, {0, 2}, true); });
  check([](const Tensor& t) { return mean(t); });
  check([](const Tensor& t) { return mean(t, {-1}, true); });
  check([](const Tensor& t) { return mean(t, {0, 1}); });
  Tensor xt = Tensor::randn({4, 3}, gen, DType::F64).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sum(in[0].t(), {1}); }, {xt}));
  Tensor xb = Tensor::randn({4}, gen, DType::F64).set_requires_grad(true);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) { return mean(in[0].expand({3, 4}), {0}); }, {xb}));
}

TEST(ReductionGradTest, MaxMinSumTo) {
  Generator gen(6);  // continuous random values: no ties, so max/min are differentiable
  Tensor x = Tensor::randn({3, 5}, gen, DType::F64).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return max(in[0], 1); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return min(in[0], 0, true); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return max(in[0].t(), 1); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return max(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sum_to(in[0], {5}); }, {x}));
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return sum_to(in[0], {3, 1}); }, {x}));
}

TEST(ReductionGradTest, MaxGradientGoesToFirstArgmax) {
  Tensor x = Tensor::from_vector<double>({1, 5, 5, 2}, {4}).set_requires_grad(true);
  max(x, 0).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
}

// ---- kernel: thread independence, accuracy, fast vs reference ------------------------------------

TEST(ReductionKernelTest, SumsAreBitwiseEqualForOneAndTwoThreads) {
  const int saved = cpu::num_threads();
  Generator gen(9);
  Tensor x = Tensor::randn({1000003}, gen);
  Tensor m = Tensor::randn({37, 4099}, gen);
  Tensor c = Tensor::randn({300, 70, 33}, gen);
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    std::vector<float> r = sum(x).to_vector<float>();
    for (float v : sum(m, {1}).to_vector<float>()) r.push_back(v);
    for (float v : sum(c, {1}).to_vector<float>()) r.push_back(v);
    for (float v : sum(c, {0, 2}).to_vector<float>()) r.push_back(v);
    runs.push_back(r);
  }
  cpu::set_num_threads(saved);
  ASSERT_EQ(runs[0].size(), runs[1].size());
  EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)), 0);
}

TEST(ReductionKernelTest, F32SumIsCorrectlyRoundedForMillionElements) {
  // f32 values accumulate in f64: the f64 error over 1e6 terms is ~1e6 * 2^-53 relative, far
  // below half an f32 ulp, so the result must be within 1 f32 ulp of the exact sum (computed here
  // in long double).
  Generator gen(10);
  Tensor x = Tensor::rand({1000003}, gen, DType::F32, Device::cpu(), 0.0, 1.0);
  std::vector<float> v = x.to_vector<float>();
  long double exact = 0;
  for (float f : v) exact += f;
  float got = float(sum(x).item());
  float want = float(exact);
  EXPECT_LE(std::fabs(double(got) - double(want)),
            double(std::nextafter(want, 2 * want) - want));
}

TEST(ReductionKernelTest, FastMatchesReferenceOnOddShapes) {
  auto& be = cpu::the_cpu_backend();
  Generator gen(11);
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 1}, {3, 8, 1}, {2, 33, 5}, {1, 1000003, 1},
                               {5, 4097, 1}, {4, 9, 1030}, {1, 3, 7}};
  for (auto& sh : shapes) {
    const int64_t outer = sh[0], n = sh[1], inner = sh[2];
    for (DType dt : {DType::F32, DType::F64}) {
      Tensor x = Tensor::randn({outer, n, inner}, gen, dt);
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
        Tensor out = Tensor::empty({outer, inner}, dt), ref_out = Tensor::empty({outer, inner}, dt);
        Tensor idx = Tensor::empty({outer, inner}, DType::I64);
        Tensor ref_idx = Tensor::empty({outer, inner}, DType::I64);
        be.reduce(op, out, op == ReduceOp::Sum ? Tensor() : idx, x, outer, n, inner);
        cpu::ref::reduce(op, ref_out, op == ReduceOp::Sum ? Tensor() : ref_idx, x, outer, n, inner);
        if (op != ReduceOp::Sum) {
          EXPECT_EQ(out.to_vector<double>(), ref_out.to_vector<double>());
          EXPECT_EQ(idx.to_vector<int64_t>(), ref_idx.to_vector<int64_t>());
        } else if (dt == DType::F32 || inner > 1) {
          // f32: both accumulate in f64 and round once (orders differ by ~n 2^-53, far below
          // f32's 2^-24) -> 1 f32 ulp; inner > 1: identical left-to-right order -> equal.
          EXPECT_TRUE(allclose(out, ref_out, 0.0, dt == DType::F32 ? 1.2e-7 : 0.0));
        } else {
          // f64 with blocked lanes vs left-to-right: both are plain f64 sums, each within
          // n * 2^-53 * sum|x| of the exact sum (the classic recursive-summation bound).
          Tensor sum_abs = Tensor::empty({outer, inner}, dt);
          cpu::ref::reduce(ReduceOp::Sum, sum_abs, Tensor(), abs(x), outer, n, inner);
          std::vector<double> a = out.to_vector<double>(), b = ref_out.to_vector<double>();
          std::vector<double> bound = sum_abs.to_vector<double>();
          for (size_t i = 0; i < a.size(); ++i)
            EXPECT_LE(std::fabs(a[i] - b[i]), 2.0 * double(n) * std::ldexp(1.0, -53) * bound[i]);
        }
      }
    }
  }
}

// ---- golden values from PyTorch (tests/golden/gen_elementwise.py; TESTPLAN U1) -------------------

TEST(ReductionGoldenTest, SumMeanMaxMinMatchPyTorch) {
  testing::GoldenFile g("elementwise.h5");
  const std::pair<const char*, std::function<Tensor(const Tensor&)>> ops[] = {
      {"sum_all", [](const Tensor& x) { return sum(x); }},
      {"sum_d1", [](const Tensor& x) { return sum(x, {1}); }},
      {"sum_d02_keep", [](const Tensor& x) { return sum(x, {0, 2}, true); }},
      {"mean_d2", [](const Tensor& x) { return mean(x, {2}); }},
      {"mean_d01_keep", [](const Tensor& x) { return mean(x, {0, 1}, true); }},
      {"max_d1", [](const Tensor& x) { return max(x, 1); }},
      {"min_d2_keep", [](const Tensor& x) { return min(x, 2, true); }},
  };
  for (const auto& [name, fn] : ops) {
    std::string n = name;
    for (DType dt : {DType::F32, DType::F64}) {
      // f32: TESTPLAN U1 bound vs PyTorch's f64 values. f64: sums of <= 60 terms in a different
      // order than PyTorch's differ by ~60 * 2^-53 relative to sum|x| (< 1e-14); the U1 bound
      // 1e-12 holds.
      double atol = dt == DType::F32 ? 1e-6 : 1e-12, rtol = dt == DType::F32 ? 1e-5 : 1e-12;
      Tensor x = g.get(n + "/x").to(dt).set_requires_grad(true);
      Tensor y = fn(x);
      EXPECT_TRUE(allclose(y, g.get(n + "/y"), atol, rtol)) << n << " " << dtype_name(dt);
      sum(mul(y, g.get(n + "/w").to(dt))).backward();
      EXPECT_TRUE(allclose(x.grad(), g.get(n + "/dx"), atol, rtol)) << n << " grad";
    }
  }
}

}  // namespace
}  // namespace loom
