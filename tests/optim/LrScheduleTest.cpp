// LrSchedule::lr_at at listed steps: warmup, cosine / linear / constant decay, and past the end.
#include <cmath>

#include <gtest/gtest.h>

#include "core/util/Check.h"
#include "optim/LrSchedule.h"
#include "tests/support/Golden.h"

namespace loom::optim {
namespace {

TEST(LrScheduleTest, CosineAtListedSteps) {
  LrSchedule s{.kind = DecayKind::Cosine, .peak_lr = 1.0, .min_lr = 0.1, .warmup_steps = 4,
               .total_steps = 12};
  // Expected values by hand: warmup (step+1)/4; then 0.1 + 0.9 * 0.5 * (1 + cos(pi r)) with
  // r = (step-4)/8: r=1/4 -> 0.1 + 0.45 (1 + sqrt(2)/2), r=1/2 -> 0.55, r=3/4 -> 0.1 + 0.45
  // (1 - sqrt(2)/2). DOUBLE_EQ (4 ulps): cos and the sums round differently from the literals.
  const double h = std::sqrt(2.0) / 2.0;
  const std::pair<int64_t, double> want[] = {
      {0, 0.25}, {1, 0.5}, {2, 0.75}, {3, 1.0}, {4, 1.0}, {6, 0.1 + 0.45 * (1 + h)},
      {8, 0.55}, {10, 0.1 + 0.45 * (1 - h)}, {12, 0.1}, {100, 0.1}};
  for (auto [step, lr] : want) EXPECT_DOUBLE_EQ(s.lr_at(step), lr) << "step " << step;
}

TEST(LrScheduleTest, LinearAndConstant) {
  LrSchedule lin{.kind = DecayKind::Linear, .peak_lr = 2.0, .min_lr = 0.0, .warmup_steps = 2,
                 .total_steps = 10};
  // Linear: 2 - 2 (step-2)/8; these are exact in binary.
  EXPECT_EQ(lin.lr_at(0), 1.0);
  EXPECT_EQ(lin.lr_at(1), 2.0);
  EXPECT_EQ(lin.lr_at(2), 2.0);
  EXPECT_EQ(lin.lr_at(6), 1.0);
  EXPECT_EQ(lin.lr_at(9), 0.25);
  EXPECT_EQ(lin.lr_at(10), 0.0);
  LrSchedule cst{.kind = DecayKind::Constant, .peak_lr = 3e-4, .min_lr = 0.0, .warmup_steps = 0,
                 .total_steps = 5};
  EXPECT_EQ(cst.lr_at(0), 3e-4);
  EXPECT_EQ(cst.lr_at(50), 3e-4);
}

TEST(LrScheduleTest, MatchesTheGoldenTrainingRecipe) {
  // gen_gpt.py computed its lrs in Python with the same formula; DOUBLE_EQ (4 ulps) covers the
  // different rounding of cos() and of the sums.
  LrSchedule s{.kind = DecayKind::Cosine, .peak_lr = 1e-2, .min_lr = 1e-3, .warmup_steps = 3,
               .total_steps = 10};
  std::vector<double> py = testing::GoldenFile("gpt.h5").get("train/lr").to_vector<double>();
  ASSERT_EQ(py.size(), 10u);
  for (int64_t i = 0; i < 10; ++i) EXPECT_DOUBLE_EQ(s.lr_at(i), py[size_t(i)]) << i;
}

TEST(LrScheduleTest, RejectsBadArguments) {
  LrSchedule s{.kind = DecayKind::Cosine, .peak_lr = 1.0, .min_lr = 0.0, .warmup_steps = 5,
               .total_steps = 4};
  EXPECT_THROW(s.lr_at(0), ValueError);
  s.total_steps = 10;
  EXPECT_THROW(s.lr_at(-1), ValueError);
  EXPECT_EQ(decay_kind_from_string("linear"), DecayKind::Linear);
  EXPECT_THROW(decay_kind_from_string("step"), ValueError);
}

}  // namespace
}  // namespace loom::optim
