// LossScaler on CPU f32 gradients: unscaling, inf/NaN detection, skipped steps, backoff to the
// floor, growth after growth_interval good steps, the cross-rank hook, checkpoint state.
// (The same decision over two Fake ranks: tests/parallel/LossScalerRanksTest.cpp.)
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "core/util/Check.h"
#include "optim/LossScaler.h"
#include "optim/SGD.h"

namespace loom::optim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor param_with_grad(const std::vector<double>& g) {
  Tensor p = Tensor::zeros({int64_t(g.size())}).set_requires_grad(true);
  p.set_grad(Tensor::from_vector(g, {int64_t(g.size())}).to(DType::F32));
  return p;
}

TEST(LossScalerTest, DefaultsMatchTheFp16Policy) {
  LossScaler s;
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_EQ(s.state().growth_tracker, 0);
  Tensor loss = Tensor::scalar(0.5);
  EXPECT_EQ(s.scale_loss(loss).item(), 32768.0);  // 0.5 * 2^16, exact in f32
}

TEST(LossScalerTest, UnscalesFiniteGradients) {
  LossScaler s({.init_scale = 8.0});
  Tensor a = param_with_grad({8.0, -4.0}), b = param_with_grad({1.0});
  EXPECT_FALSE(s.unscale_(std::vector<Tensor>{a.grad(), Tensor(), b.grad()}));
  // Division by a power of two is exact in f32.
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{1.0f, -0.5f}));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{0.125f}));
  EXPECT_THROW(s.unscale_(std::vector<Tensor>{a.grad()}), ValueError);  // twice in one step
  s.update();
  EXPECT_EQ(s.scale(), 8.0);
  EXPECT_EQ(s.state().growth_tracker, 1);
}

TEST(LossScalerTest, HugeFiniteGradientsAreNotOverflow) {
  // 4 * 3e38 would overflow an f32 sum; the probe sum(g * 0) does not.
  LossScaler s({.init_scale = 1.0});
  Tensor a = param_with_grad({3e38, 3e38, 3e38, -3e38});
  EXPECT_FALSE(s.unscale_(std::vector<Tensor>{a.grad()}));
}

TEST(LossScalerTest, InfOrNaNSkipsTheStepAndBacksOff) {
  for (double bad : {kInf, -kInf, kNaN}) {
    LossScaler s({.init_scale = 1024.0});
    Tensor good = param_with_grad({2048.0}), poisoned = param_with_grad({1.0, bad});
    SGD opt({{"good", good}, {"poisoned", poisoned}}, {.lr = 0.1});
    EXPECT_FALSE(s.step(opt)) << bad;
    EXPECT_TRUE(s.found_inf());
    EXPECT_EQ(good.to_vector<float>()[0], 0.0f) << "skipped step must leave parameters alone";
    EXPECT_EQ(s.scale(), 512.0);
    EXPECT_EQ(s.skipped_steps(), 1);
    // The next step is clean: parameters move by -lr * grad / scale = -0.1 * 512 / 512.
    good.set_grad(Tensor::full({1}, 512.0));
    poisoned.set_grad(Tensor::zeros({2}));
    EXPECT_TRUE(s.step(opt));
    EXPECT_FLOAT_EQ(good.to_vector<float>()[0], -0.1f);  // one f32 rounding of 0.1 * 1
    EXPECT_EQ(s.scale(), 512.0);
  }
}

TEST(LossScalerTest, FixedScaleSkipsOverflowButNeverMoves) {
  LossScaler s({.init_scale = 256.0, .growth_interval = 1, .dynamic = false});
  Tensor p = param_with_grad({kInf});
  SGD opt({{"p", p}}, {.lr = 0.1});
  EXPECT_FALSE(s.step(opt));
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_EQ(s.scale(), 256.0);  // no backoff
  p.set_grad(Tensor::full({1}, 256.0));
  EXPECT_TRUE(s.step(opt));
  EXPECT_EQ(s.scale(), 256.0);  // no growth, although growth_interval is 1
}

TEST(LossScalerTest, BackoffStopsAtMinScale) {
  LossScaler s({.init_scale = 4.0, .min_scale = 1.0});
  const double expected[] = {2.0, 1.0, 1.0, 1.0};
  for (double e : expected) {
    Tensor p = param_with_grad({kInf});
    EXPECT_TRUE(s.unscale_(std::vector<Tensor>{p.grad()}));
    s.update();
    EXPECT_EQ(s.scale(), e);
  }
  EXPECT_EQ(s.skipped_steps(), 4);
}

TEST(LossScalerTest, GrowsAfterGrowthIntervalGoodStepsInARow) {
  LossScaler s({.init_scale = 16.0, .growth_interval = 3});
  auto good_step = [&] {
    Tensor p = param_with_grad({1.0});
    EXPECT_FALSE(s.unscale_(std::vector<Tensor>{p.grad()}));
    s.update();
  };
  good_step();
  good_step();
  EXPECT_EQ(s.scale(), 16.0);
  good_step();  // third good step in a row
  EXPECT_EQ(s.scale(), 32.0);
  EXPECT_EQ(s.state().growth_tracker, 0);
  good_step();
  good_step();
  Tensor bad = param_with_grad({kNaN});  // an overflow resets the run of good steps
  s.unscale_(std::vector<Tensor>{bad.grad()});
  s.update();
  EXPECT_EQ(s.scale(), 16.0);
  good_step();
  good_step();
  EXPECT_EQ(s.scale(), 16.0);
  good_step();
  EXPECT_EQ(s.scale(), 32.0);
}

TEST(LossScalerTest, DefaultGrowthIntervalIs2000) {
  LossScaler s;
  for (int i = 0; i < 1999; ++i) {
    s.unscale_(std::vector<Tensor>{});
    s.update();
  }
  EXPECT_EQ(s.scale(), 65536.0);
  s.unscale_(std::vector<Tensor>{});
  s.update();
  EXPECT_EQ(s.scale(), 131072.0);
}

TEST(LossScalerTest, ReducerSeesTheLocalFlagAndDecides) {
  // The hook stands in for an all-reduce(max): it reports what this rank found and returns
  // what the "other rank" found.
  double seen = -1, other = 1.0;
  LossScaler s({.init_scale = 2.0}, [&](const Tensor& f) {
    ASSERT_EQ(f.numel(), 1);
    EXPECT_EQ(f.dtype(), DType::F32);
    seen = f.item();
    Tensor(f).fill_(std::max(seen, other));
  });
  Tensor p = param_with_grad({1.0});
  SGD opt({{"p", p}}, {.lr = 0.1});
  EXPECT_FALSE(s.step(opt));  // finite here, overflow elsewhere: skip
  EXPECT_EQ(seen, 0.0);
  EXPECT_EQ(p.to_vector<float>()[0], 0.0f);
  EXPECT_EQ(s.scale(), 1.0);
  other = 0.0;
  p.set_grad(Tensor::full({1}, 1.0));
  EXPECT_TRUE(s.step(opt));
  EXPECT_NE(p.to_vector<float>()[0], 0.0f);
}

TEST(LossScalerTest, StateRoundTripsAndIsValidated) {
  LossScaler a({.growth_interval = 5});
  a.set_state({1024.0, 4});
  LossScaler b({.growth_interval = 5});
  b.set_state(a.state());
  b.unscale_(std::vector<Tensor>{});
  b.update();
  EXPECT_EQ(b.scale(), 2048.0);  // tracker 4 + 1 good step = interval
  EXPECT_THROW(b.set_state({0.0, 0}), ValueError);
  EXPECT_THROW(b.set_state({kInf, 0}), ValueError);
  EXPECT_THROW(b.set_state({8.0, -1}), ValueError);
  EXPECT_THROW(LossScaler({.backoff_factor = 1.5}), ValueError);
  EXPECT_THROW(LossScaler({.init_scale = 0.5, .min_scale = 1.0}), ValueError);
}

TEST(LossScalerTest, DisabledScalerIsAPassThrough) {
  LossScaler s({.enabled = false});
  EXPECT_EQ(s.scale(), 1.0);
  Tensor p = param_with_grad({kInf});
  SGD opt({{"p", p}}, {.lr = 0.1});
  EXPECT_TRUE(s.step(opt));  // nothing is checked when scaling is off
  EXPECT_EQ(s.scale(), 1.0);
  EXPECT_EQ(p.grad().to_vector<float>()[0], std::numeric_limits<float>::infinity());
}

TEST(LossScalerTest, UpdateWithoutUnscaleThrows) {
  LossScaler s;
  EXPECT_THROW(s.update(), ValueError);
}

}  // namespace
}  // namespace loom::optim
