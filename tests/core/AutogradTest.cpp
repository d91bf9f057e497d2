// Autograd engine: diamond graphs, accumulation, retain_graph, freeing saved tensors, in-place
// modification of saved tensors, no_grad / detach, and post-accumulate hooks (TESTPLAN U3).
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"
#include "core/autograd/Recompute.h"
#include "core/backend/Backend.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
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

// recompute(fn, inputs): the same value and the same gradients (inputs and the parameters fn
// uses, bitwise: x and w are each used twice, and a sum of two terms is exact in either order), fn's intermediates are not kept between forward and backward (only what the
// outer graph saves), parameter hooks fire, and without grad mode it is simply fn.
TEST(AutogradTest, RecomputeGivesTheSameGradientsAndKeepsOnlyItsInputs) {
  Tensor w = Tensor::from_vector<double>({0.5, -1.5, 2.0}, {3}).set_requires_grad(true);
  Tensor w2 = w.detach().clone().set_requires_grad(true);
  auto fn = [](const Tensor& x, const Tensor& p) { return tanh(exp(x * p) * p + x); };
  Tensor x1 = leaf({0.1, 0.2, 0.3}), x2 = leaf({0.1, 0.2, 0.3});
  int hooks = 0;
  const int id = w2.register_post_accumulate_grad_hook([&](const Tensor&) { ++hooks; });
  Tensor plain = sum(fn(x1, w));
  Tensor redone =
      sum(autograd::recompute([&](const std::vector<Tensor>& in) { return fn(in[0], w2); }, {x2}));
  EXPECT_EQ(plain.item(), redone.item());
  plain.backward();
  redone.backward();
  EXPECT_EQ(x1.grad().to_vector<double>(), x2.grad().to_vector<double>());
  EXPECT_EQ(w.grad().to_vector<double>(), w2.grad().to_vector<double>());
  EXPECT_EQ(hooks, 1);
  w2.remove_hook(id);

  // Memory: between forward and backward only the input (already alive) is held by fn's node.
  Tensor big = Tensor::ones({4096}, DType::F64).set_requires_grad(true);
  const size_t baseline = cpu_backend().allocated_bytes(0);
  Tensor y = autograd::recompute(
      [](const std::vector<Tensor>& in) { return exp(exp(exp(in[0]) * 0.5) * 0.5); }, {big});
  // y itself (32 KiB) and nothing else: the three exp outputs were not saved.
  EXPECT_EQ(cpu_backend().allocated_bytes(0), baseline + 4096 * 8);
  sum(y).backward();
  EXPECT_TRUE(big.grad().defined());
  {
    NoGradGuard g;
    Tensor z = autograd::recompute([](const std::vector<Tensor>& in) { return in[0] * 2.0; }, {big});
    EXPECT_FALSE(z.requires_grad());
  }
}

// A parameter's accumulator runs as soon as its gradient is complete. With two graphs of the same
// parameters alive at once (pipeline schedules: forward of micro-batch 1 before the backward of
// micro-batch 0), both share the accumulators made by the first, which are older than every node
// of the second graph; ordered by age alone they would all wait for the end of the second
// backward, holding one transient weight gradient per layer. Run eagerly, each is added into
// .grad and freed before the next layer's is made.
TEST(AutogradTest, AccumulatorsRunEagerlySoGradientBuffersDoNotPileUp) {
  const int64_t n = 512;  // 1 MiB f32 weights
  std::vector<Tensor> w;
  for (int i = 0; i < 3; ++i) w.push_back(Tensor::full({n, n}, 0.001).set_requires_grad(true));
  Tensor x = Tensor::ones({4, n});
  auto loss = [&] { return sum(matmul(matmul(matmul(x, w[0]), w[1]), w[2])); };
  loss().backward();  // .grad takes the first buffers
  Tensor first = loss(), second = loss();  // two live graphs sharing the accumulators
  const size_t weight = size_t(n * n) * sizeof(float);
  cpu_backend().reset_peak(0);
  const size_t before = cpu_backend().allocated_bytes(0);
  second.backward();  // each buffer is added into .grad and freed right away
  EXPECT_LT(cpu_backend().peak_allocated_bytes(0), before + 2 * weight);
  first.backward();
}

}  // namespace
}  // namespace loom
