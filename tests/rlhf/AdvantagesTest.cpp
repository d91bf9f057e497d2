// Critic-free advantage estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++) and DAPO's dynamic
// sampling filter and overlong shaping, each against values worked out by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>

#include "core/util/Check.h"
#include "rlhf/Advantages.h"
#include "tests/support/GradCheck.h"

namespace loom::rlhf {
namespace {

using loom::testing::allclose;

Tensor vec(const std::vector<double>& v) { return Tensor::from_vector(v, {int64_t(v.size())}); }

TEST(AdvantagesTest, GrpoNormalisesByGroupMeanAndUnbiasedStd) {
  // Group {1,2,3}: mean 2, unbiased std 1. Group {0,0,4}: mean 4/3, deviations (-4/3,-4/3,8/3),
  // sum of squares 96/9, unbiased var 48/9 = 16/3, std 4/sqrt(3).
  Tensor s = vec({1, 2, 3, 0, 0, 4});
  const double r3 = std::sqrt(3.0);
  Tensor a = grpo_advantages(s, {.group_size = 3, .eps = 0.0});
  // Exact up to a few roundings of the mean and the square root.
  EXPECT_TRUE(allclose(a, vec({-1, 0, 1, -1 / r3, -1 / r3, 2 / r3}), 1e-15, 1e-15));
  // eps is added to the std: (x - mean) / (std + eps).
  Tensor ae = grpo_advantages(s, {.group_size = 3, .eps = 0.5});
  EXPECT_TRUE(allclose(ae.narrow(0, 0, 3), vec({-1 / 1.5, 0, 1 / 1.5}), 1e-15, 1e-15));
  // Dr. GRPO: only the mean is removed.
  Tensor d = grpo_advantages(s, {.group_size = 3, .scale_by_std = false});
  EXPECT_TRUE(allclose(d, vec({-1, 0, 1, -4.0 / 3, -4.0 / 3, 8.0 / 3}), 1e-15, 1e-15));
  // A group whose samples all scored the same gets zero advantage (0 / (0 + eps)).
  EXPECT_EQ(grpo_advantages(vec({5, 5}), {.group_size = 2}).to_vector<double>(),
            (std::vector<double>{0, 0}));
  EXPECT_EQ(grpo_advantages(s.to(DType::F32), {.group_size = 3}).dtype(), DType::F32);
  EXPECT_THROW(grpo_advantages(s, {.group_size = 4}), ValueError);  // 6 is not a multiple of 4
  EXPECT_THROW(grpo_advantages(s, {.group_size = 1}), ValueError);  // no group statistics
}

TEST(AdvantagesTest, RlooSubtractsTheMeanOfTheOtherSamples) {
  // {1,2,3}: 1 - (2+3)/2 = -1.5, 2 - (1+3)/2 = 0, 3 - (1+2)/2 = 1.5.
  // {0,0,4}: 0 - (0+4)/2 = -2 (twice), 4 - (0+0)/2 = 4.
  Tensor a = rloo_advantages(vec({1, 2, 3, 0, 0, 4}), 3);
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{-1.5, 0, 1.5, -2, -2, 4}));
  // n = 2: each sample's baseline is the other one.
  EXPECT_EQ(rloo_advantages(vec({3, 1}), 2).to_vector<double>(), (std::vector<double>{2, -2}));
  EXPECT_THROW(rloo_advantages(vec({1, 2, 3}), 1), ValueError);
}

TEST(AdvantagesTest, TokenAdvantagesBroadcastOverTheResponseMask) {
  Tensor mask = Tensor::from_vector<double>({0, 1, 1, 1, 1, 0}, {2, 3});
  Tensor a = token_advantages(vec({2.0, -3.0}), mask);
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{0, 2, 2, -3, -3, 0}));
  EXPECT_THROW(token_advantages(vec({1, 2, 3}), mask), ValueError);
}

TEST(AdvantagesTest, ReinforcePlusPlusReturnsAreReverseSumsOfKlShapedRewards) {
  // d = logp - ref on the masked tokens: row 0 (t=1,2) = 0.2, -0.4; row 1 (t=0,1) = 0.1, 0.3.
  Tensor mask = Tensor::from_vector<double>({0, 1, 1, 1, 1, 0}, {2, 3});
  Tensor ref = Tensor::from_vector<double>({-1, -1, -1, -2, -2, -2}, {2, 3});
  Tensor logp = Tensor::from_vector<double>({-7, -0.8, -1.4, -1.9, -1.7, -9}, {2, 3});
  Tensor score = vec({1.0, -1.0});
  ReinforcePpOutput out = reinforce_pp_advantages(score, logp, ref, mask, /*kl_coef=*/0.5);
  // r = -0.5 * d, plus the score at the row's last masked token.
  const std::vector<double> r = {0, -0.1, 0.2 + 1.0, -0.05, -0.15 - 1.0, 0};
  EXPECT_TRUE(allclose(out.rewards, Tensor::from_vector(r, {2, 3}), 1e-15, 1e-15));
  // gamma = 1: G_t = sum of the rewards from t to the end of the row.
  const std::vector<double> g = {0, 1.1, 1.2, -1.2, -1.15, 0};
  EXPECT_TRUE(allclose(out.returns, Tensor::from_vector(g, {2, 3}), 1e-15, 1e-15));
  // Whitened over the 4 masked tokens: mean -0.0125, unbiased var = sum (G - mean)^2 / 3.
  const double mean = (1.1 + 1.2 - 1.2 - 1.15) / 4;
  double ss = 0;
  for (double x : {1.1, 1.2, -1.2, -1.15}) ss += (x - mean) * (x - mean);
  const double inv_std = 1.0 / std::sqrt(ss / 3 + 1e-8);
  std::vector<double> want(6, 0.0);
  for (int i : {1, 2, 3, 4}) want[size_t(i)] = (g[size_t(i)] - mean) * inv_std;
  EXPECT_TRUE(allclose(out.advantages, Tensor::from_vector(want, {2, 3}), 1e-15, 1e-14));
  // gamma = 0.5: row 0 t=1 is -0.1 + 0.5 * 1.2 = 0.5.
  ReinforcePpOutput half = reinforce_pp_advantages(score, logp, ref, mask, 0.5, 0.5);
  EXPECT_NEAR(half.returns.to_vector<double>()[1], 0.5, 1e-15);
  EXPECT_THROW(reinforce_pp_advantages(score, logp, ref, mask, 0.5, 1.5), ValueError);
}

TEST(AdvantagesTest, DynamicSamplingDropsGroupsWithEqualScores) {
  Tensor s = vec({1, 1, 1, 0, 1, 0, 0, 0, 0, 0.5, 0.55, 0.5});
  EXPECT_EQ(dynamic_sampling_keep(s, 3), (std::vector<bool>{false, true, false, true}));
  // With tol 0.1 the last group (spread 0.05) counts as all-equal too.
  EXPECT_EQ(dynamic_sampling_keep(s, 3, 0.1), (std::vector<bool>{false, true, false, false}));
  EXPECT_EQ(kept_sample_indices({false, true, false, true}, 3).to_vector<int64_t>(),
            (std::vector<int64_t>{3, 4, 5, 9, 10, 11}));
  EXPECT_EQ(kept_sample_indices({false, false}, 3).numel(), 0);
}

TEST(AdvantagesTest, OverlongPenaltyIsLinearInsideTheCacheWindow) {
  // L_max 20, L_cache 5: no penalty up to 15, then (15 - L) / 5 down to -1 at 20, -1 beyond.
  std::vector<double> p = overlong_penalty({0, 15, 16, 18, 20, 21, 100}, 20, 5);
  const std::vector<double> want = {0, 0, -0.2, -0.6, -1, -1, -1};
  ASSERT_EQ(p.size(), want.size());
  // (15 - L) / 5 in f64: one rounding of a division.
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], want[i], 1e-16) << i;
  EXPECT_NEAR(overlong_penalty({18}, 20, 5, /*factor=*/0.5)[0], -0.3, 1e-16);
  EXPECT_THROW(overlong_penalty({1}, 20, 0), ValueError);
  EXPECT_THROW(overlong_penalty({1}, 20, 21), ValueError);
}

}  // namespace
}  // namespace loom::rlhf
