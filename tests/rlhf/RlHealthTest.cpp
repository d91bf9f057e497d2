// Response statistics (truncation without EOS) and the RL health check: each warning fires just
// above its threshold and not at it, names its cause and config field, the reward-trend check
// separates a real decline from noise, and a rising reward with responses at the length limit
// (reward hacking by length) warns naming ppo.reward.
#include <gtest/gtest.h>

#include <cmath>

#include "core/util/Check.h"
#include "rlhf/RlHealth.h"

namespace loom::rlhf {
namespace {

constexpr int32_t kEos = 9;

TEST(RlHealthTest, ResponseStatsCountResponsesCutWithoutEos) {
  // Limit 4: {1,2,3,4} is cut by the limit; {1,2} stopped without EOS (context length);
  // {1,9} and {1,2,3,9} ended with EOS (the second exactly at the limit).
  ResponseStats s = response_stats({{1, 2, 3, 4}, {1, 2}, {1, kEos}, {1, 2, 3, kEos}}, kEos, 4);
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.truncated_fraction, 0.25);
  EXPECT_DOUBLE_EQ(s.no_eos_fraction, 0.5);
  EXPECT_DOUBLE_EQ(s.mean_length, 12.0 / 4);
  EXPECT_DOUBLE_EQ(truncated_fraction({{1, 2, 3, 4}, {5, 6, 7, 8}}, kEos, 4), 1.0);
  EXPECT_EQ(response_stats({}, kEos, 4).truncated_fraction, 0.0);
  EXPECT_THROW(response_stats({{1}}, kEos, 0), ValueError);
}

RlIterationMetrics healthy() {
  return {.truncated_fraction = 0.05,
          .mean_response_length = 40,
          .max_new_tokens = 128,
          .kl = 3.0,
          .reward_mean = 0.5};
}

std::vector<std::string> causes(const std::vector<HealthWarning>& w) {
  std::vector<std::string> out;
  for (const HealthWarning& x : w) out.push_back(x.cause);
  return out;
}

TEST(RlHealthTest, HealthyMetricsGiveNoWarning) {
  EXPECT_TRUE(health_check({}).empty());
  EXPECT_TRUE(health_check({healthy()}).empty());
}

TEST(RlHealthTest, TruncationWarnsAboveItsThresholdAndNamesTheFields) {
  RlIterationMetrics m = healthy();
  m.truncated_fraction = 0.2;  // at the default threshold: no warning
  EXPECT_TRUE(health_check({m}).empty());
  m.truncated_fraction = 0.92;
  m.mean_response_length = 127;  // also near the limit, but truncation already says it
  std::vector<HealthWarning> w = health_check({m});
  ASSERT_EQ(causes(w), (std::vector<std::string>{"truncation"}));
  EXPECT_EQ(w[0].config_field, "ppo.rollout.max_new_tokens");
  EXPECT_EQ(w[0].message,
            "responses hit max_new_tokens without EOS on 92% of samples (threshold 20%); raise "
            "ppo.rollout.max_new_tokens (with ppo.truncated_responses MASK those responses teach "
            "nothing; with KEEP set ppo.missing_eos_penalty)");
  HealthThresholds grpo{.config_prefix = "grpo"};
  EXPECT_EQ(health_check({m}, grpo)[0].config_field, "grpo.rollout.max_new_tokens");
}

TEST(RlHealthTest, LengthNearTheLimitWarnsAboveNinetyPercent) {
  RlIterationMetrics m = healthy();
  m.mean_response_length = 115.2;  // 0.9 * 128 exactly: no warning
  EXPECT_TRUE(health_check({m}).empty());
  m.mean_response_length = 116;
  std::vector<HealthWarning> w = health_check({m});
  ASSERT_EQ(causes(w), (std::vector<std::string>{"length_near_limit"}));
  EXPECT_EQ(w[0].config_field, "ppo.rollout.max_new_tokens");
  EXPECT_NE(w[0].message.find("116.0 of max_new_tokens 128 (91%, threshold 90%)"),
            std::string::npos)
      << w[0].message;
  m.max_new_tokens = 0;  // unknown limit: the check is off
  EXPECT_TRUE(health_check({m}).empty());
}

TEST(RlHealthTest, KlTooHighOrNegativeWarns) {
  RlIterationMetrics m = healthy();
  m.kl = 20.0;
  EXPECT_TRUE(health_check({m}).empty());
  m.kl = 20.5;
  std::vector<HealthWarning> w = health_check({m});
  ASSERT_EQ(causes(w), (std::vector<std::string>{"kl_high"}));
  EXPECT_EQ(w[0].config_field, "ppo.kl_coef");
  EXPECT_NE(w[0].message.find("KL to the reference is 20.5 nats per sequence (threshold 20)"),
            std::string::npos)
      << w[0].message;
  m.kl = -1.0;
  EXPECT_TRUE(health_check({m}).empty());
  m.kl = -1.5;
  w = health_check({m});
  ASSERT_EQ(causes(w), (std::vector<std::string>{"kl_negative"}));
  EXPECT_EQ(w[0].config_field, "ppo.rollout.temperature");
}

TEST(RlHealthTest, RewardDeclineNeedsASignificantSlopeOverTheWindow) {
  std::vector<RlIterationMetrics> h;
  for (int i = 0; i < 10; ++i) {
    RlIterationMetrics m = healthy();
    m.iteration = i;
    m.reward_mean = 1.0 - 0.1 * i + (i % 2 ? 0.02 : -0.02);  // steady fall with a little noise
    h.push_back(m);
  }
  std::vector<HealthWarning> w = health_check(h);
  ASSERT_EQ(causes(w), (std::vector<std::string>{"reward_decline"}));
  EXPECT_EQ(w[0].config_field, "optimizer.lr");
  EXPECT_NE(w[0].message.find("over the last 10 iterations"), std::string::npos) << w[0].message;
  // Nine points are not a full window: no trend check yet.
  EXPECT_TRUE(health_check({h.begin() + 1, h.end()}).empty());
  // Noise around a flat mean (alternating 0.5, -0.5, ...): the fitted slope is negative
  // (-2.5 / 82.5) but t is about -0.5, far from -3.
  for (int i = 0; i < 10; ++i) h[size_t(i)].reward_mean = i % 2 ? -0.5 : 0.5;
  EXPECT_TRUE(health_check(h).empty());
  // A rising reward never warns.
  for (int i = 0; i < 10; ++i) h[size_t(i)].reward_mean = 0.1 * i;
  EXPECT_TRUE(health_check(h).empty());
  EXPECT_THROW(health_check(h, {.reward_window = 2}), ValueError);
}

TEST(RlHealthTest, RewardTrendThresholdIsTheSlopeTStatistic) {
  // y = {0, -1, 0, -3} on x = {0, 1, 2, 3}: mean -1, sxx 5, sxy -4, slope -0.8; fitted
  // {0.2, -0.6, -1.4, -2.2}, residuals {-0.2, -0.4, 1.4, -0.8}, sse 2.8,
  // se = sqrt(2.8 / (4 - 2) / 5) = sqrt(0.28), t = -0.8 / sqrt(0.28) = -1.51.
  std::vector<RlIterationMetrics> h(4, healthy());
  const double y[] = {0, -1, 0, -3};
  for (int i = 0; i < 4; ++i) h[size_t(i)].reward_mean = y[i];
  const double t = -0.8 / std::sqrt(0.28);
  // The check computes t in f64 (error ~1e-15): +-1e-9 puts the threshold clearly on each side.
  EXPECT_TRUE(health_check(h, {.reward_window = 4, .min_reward_slope_t = t - 1e-9}).empty());
  EXPECT_EQ(causes(health_check(h, {.reward_window = 4, .min_reward_slope_t = t + 1e-9})),
            (std::vector<std::string>{"reward_decline"}));
}

TEST(RlHealthTest, RewardRisingWhileLengthPinsToTheLimitWarnsAndNamesTheRewardField) {
  // Ten iterations of a steadily rising reward, y_i = 0.1 i -+ 0.02 (alternating, from -0.02):
  // mean 0.45, sxx 82.5, sxy 8.25 + 0.02 * 5, slope 0.1 + 0.1 / 82.5 = 0.101212; fitted ends
  // 0.45 -+ 4.5 * slope = -0.00545 and 0.905.
  std::vector<RlIterationMetrics> h;
  for (int i = 0; i < 10; ++i) {
    RlIterationMetrics m = healthy();
    m.iteration = i;
    m.reward_mean = 0.1 * i + (i % 2 ? 0.02 : -0.02);
    h.push_back(m);
  }
  EXPECT_TRUE(health_check(h).empty());  // a rising reward at a healthy length is what we want
  h.back().mean_response_length = 124;   // 97% of max_new_tokens 128
  std::vector<HealthWarning> w = health_check(h);
  ASSERT_EQ(causes(w),
            (std::vector<std::string>{"length_near_limit", "reward_rises_at_length_limit"}));
  EXPECT_EQ(w[1].config_field, "ppo.reward");
  EXPECT_NE(w[1].message.find("reward rose from -0.00545 to 0.905 over the last 10 iterations"),
            std::string::npos)
      << w[1].message;
  EXPECT_NE(w[1].message.find("while responses sit at the length limit (mean length 97% of "
                              "max_new_tokens, 5% cut without EOS): the reward may be paying for "
                              "length; add a length_penalty source to ppo.reward or set "
                              "ppo.overlong_buffer"),
            std::string::npos)
      << w[1].message;
  // Responses cut without EOS count as at the limit too (with the truncation warning).
  h.back().mean_response_length = 40;
  h.back().truncated_fraction = 0.6;
  EXPECT_EQ(causes(health_check(h)),
            (std::vector<std::string>{"truncation", "reward_rises_at_length_limit"}));
  // Nine iterations are not a full window; a flat reward at the limit warns about length only.
  EXPECT_EQ(causes(health_check({h.begin() + 1, h.end()})),
            (std::vector<std::string>{"truncation"}));
  for (RlIterationMetrics& m : h) m.reward_mean = 0.5;
  EXPECT_EQ(causes(health_check(h)), (std::vector<std::string>{"truncation"}));
}

TEST(RlHealthTest, GroupsWithoutRewardVarianceWarn) {
  RlIterationMetrics m = healthy();
  m.zero_variance_groups = 0.5;
  EXPECT_TRUE(health_check({m}).empty());
  m.zero_variance_groups = 0.78;
  std::vector<HealthWarning> w = health_check({m}, {.config_prefix = "grpo"});
  ASSERT_EQ(causes(w), (std::vector<std::string>{"no_group_signal"}));
  EXPECT_EQ(w[0].config_field, "grpo.group_size");
  EXPECT_NE(w[0].message.find("78% of prompt groups"), std::string::npos) << w[0].message;
}

TEST(RlHealthTest, MonitorReportsACauseOnceWhileItHoversAtItsThreshold) {
  HealthMonitor mon;
  std::vector<int64_t> reported;  // iterations with a no_group_signal report
  auto feed = [&](int64_t it, double zero_variance_groups) {
    RlIterationMetrics m = healthy();
    m.iteration = it;
    m.zero_variance_groups = zero_variance_groups;
    for (const HealthWarning& w : mon.update(m)) {
      EXPECT_EQ(w.cause, "no_group_signal");
      reported.push_back(it);
    }
  };
  // Iterations 1-29 alternate above (0.56) and below (0.4) the 50% threshold: reported at 1 only.
  for (int64_t it = 1; it <= 29; ++it) feed(it, it % 2 ? 0.56 : 0.4);
  EXPECT_EQ(reported, (std::vector<int64_t>{1}));
  // Last fired at 29; 9 quiet iterations (30-38), then firing at 39 is the same episode; after
  // 10 quiet ones (40-49, the reward window) firing at 50 is a new one.
  for (int64_t it = 30; it <= 38; ++it) feed(it, 0.4);
  feed(39, 0.6);
  for (int64_t it = 40; it <= 49; ++it) feed(it, 0.4);
  feed(50, 0.6);
  EXPECT_EQ(reported, (std::vector<int64_t>{1, 50}));
}

}  // namespace
}  // namespace loom::rlhf
