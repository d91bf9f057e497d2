// Autograd engine: diamond graphs, accumulation, retain_graph, freeing saved tensors, in-place
// modification of saved tensors, no_grad / detach, and post-accumulate hooks (TESTPLAN U3).
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"
#include "core/backend/Backend.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/tensor/Tensor.h"

namespace loom {
namespace {

Tensor leaf(std::vector<double> v) {
  Shape s{int64_t(v.size())};
  return Tensor::from_vector(v, s).set_requires_grad(true);
}

TEST(AutogradTest, DiamondGraphAccumulatesBothPathsExactly) {
  // f = sum(3x * x^2) = sum(3 x^3), df/dx = 9 x^2, reached through two paths that meet again.
  Tensor x = leaf({1.0, -2.0, 0.5});
  Tensor a = x * 3.0;
  Tensor b = x * x;
  sum(a * b).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{9.0, 36.0, 2.25}));
}

TEST(AutogradTest, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1.0, 2.0});
  sum(x * x).backward();
  sum(x * x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{4.0, 8.0}));
  x.set_grad(Tensor());
  sum(x * 5.0).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5.0, 5.0}));
}

TEST(AutogradTest, RetainGraphAllowsASecondBackwardAndWithoutItThrows) {
  Tensor x = leaf({3.0});
  Tensor y = sum(exp(x) * x);
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  double e3 = std::exp(3.0);
  EXPECT_DOUBLE_EQ(x.grad().item(), 2 * (e3 * 3.0 + e3));
  try {
    y.backward();
    FAIL() << "expected a second backward without retain_graph to throw";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(AutogradTest, SavedTensorsAreFreedAfterBackward) {
  Tensor x = Tensor::ones({1024}, DType::F64).set_requires_grad(true);
  size_t baseline = cpu_backend().allocated_bytes(0);
  Tensor y = sum(exp(x * 2.0) * x);
  // exp's output is saved by the multiply (the other intermediates are not saved by anyone).
  EXPECT_GE(cpu_backend().allocated_bytes(0), baseline + 8192 + 8);
  y.backward();
  // Only x.grad (8 KiB) and the 0-d y (8 bytes) remain; every saved intermediate is gone.
  EXPECT_EQ(cpu_backend().allocated_bytes(0), baseline + 8192 + 8);
}

TEST(AutogradTest, InPlaceChangeOfASavedTensorIsCaught) {
  Tensor x = leaf({1.0, 2.0});
  Tensor e = exp(x);          // exp saves its output for backward
  Tensor y = sum(e * 2.0);
  {
    NoGradGuard g;
    e.narrow(0, 0, 1).add_(Tensor::ones({1}, DType::F64));  // writes through a view
  }
  try {
    y.backward();
    FAIL() << "expected backward to detect the in-place modification";
  } catch (const ValueError& err) {
    std::string m = err.what();
    EXPECT_NE(m.find("modified in place"), std::string::npos) << m;
    EXPECT_NE(m.find("version 0"), std::string::npos) << m;
    EXPECT_NE(m.find("version 1"), std::string::npos) << m;
  }
}

TEST(AutogradTest, NoGradAndDetachStopHistory) {
  Tensor x = leaf({1.0, 2.0});
  {
    NoGradGuard g;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.shares_storage(x));
  Tensor y = sum(x * d);  // d is a constant: dy/dx = d
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1.0, 2.0}));
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE((x * 2.0).is_leaf());
}

TEST(AutogradTest, PostAccumulateHookSeesTheFinalGradientOncePerBackward) {
  Tensor w = leaf({2.0, 3.0});
  int calls = 0;
  std::vector<double> seen;
  int h = w.register_post_accumulate_grad_hook([&](const Tensor& p) {
    ++calls;
    seen = p.grad().to_vector<double>();
  });
  // w is used on three paths; the hook must fire once, after all three have been added.
  Tensor y = sum(w * w + w * 4.0);
  y.backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<double>{8.0, 10.0}));
  w.remove_hook(h);
  sum(w).backward();
  EXPECT_EQ(calls, 1);
}

TEST(AutogradTest, BackwardNeedsGradForNonScalarsAndAGraph) {
  Tensor x = leaf({1.0, 2.0});
  EXPECT_THROW((x * 2.0).backward(), ValueError);
  (x * 2.0).backward(Tensor::ones({2}, DType::F64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0, 2.0}));
  EXPECT_THROW(Tensor::ones({1}).backward(), ValueError);
}

TEST(AutogradTest, ViewsPropagateGradientsToTheirBase) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
  Tensor y = sum(x.t().narrow(0, 1, 2) * x.t().narrow(0, 1, 2));  // uses columns 1 and 2 of x
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 4, 6, 0, 10, 12}));
  Tensor z = Tensor::from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
  sum(z.expand({4, 3}) * 1.0).backward();
  EXPECT_EQ(z.grad().to_vector<double>(), (std::vector<double>{4, 4, 4}));
}

}  // namespace
}  // namespace loom
