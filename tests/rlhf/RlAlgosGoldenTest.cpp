// Critic-free RL pieces against PyTorch (tests/golden/gen_rl_algos.py -> rl_algos.h5, float64):
// GRPO / Dr. GRPO / RLOO / REINFORCE++ advantages, DAPO dynamic sampling and overlong shaping,
// the clipped policy-gradient loss under every aggregation, the k1/k2/k3 KL loss terms, and the
// IPO / cDPO / SimPO losses: values and gradients.
#include <gtest/gtest.h>

#include "rlhf/Advantages.h"
#include "rlhf/Losses.h"
#include "rlhf/PolicyGradient.h"
#include "tests/support/Golden.h"
#include "tests/support/GradCheck.h"

namespace loom::rlhf {
namespace {

using loom::testing::allclose;
using loom::testing::GoldenFile;

// TESTPLAN U1, f64: both sides evaluate the same formulas in f64 in different orders, so they
// agree to a few ulps; 1e-12 leaves room for different summation and exp/log implementations.
constexpr double kAtol = 1e-12, kRtol = 1e-12;
constexpr int64_t kGroup = 3;  // samples per prompt in the generator

Tensor leaf(const GoldenFile& g, const std::string& name) {
  return g.get(name).set_requires_grad(true);
}

TEST(RlAlgosGoldenTest, GroupAdvantagesAndDynamicSampling) {
  GoldenFile g("rl_algos.h5");
  Tensor s = g.get("scores");
  EXPECT_TRUE(
      allclose(grpo_advantages(s, {.group_size = kGroup}), g.get("grpo/adv"), kAtol, kRtol));
  EXPECT_TRUE(allclose(grpo_advantages(s, {.group_size = kGroup, .scale_by_std = false}),
                       g.get("drgrpo/adv"), kAtol, kRtol));
  EXPECT_TRUE(allclose(rloo_advantages(s, kGroup), g.get("rloo/adv"), kAtol, kRtol));
  EXPECT_TRUE(allclose(token_advantages(g.get("grpo/adv"), g.get("mask")), g.get("grpo/token_adv"),
                       0, 0));  // a product with 0/1: exact
  std::vector<bool> keep = dynamic_sampling_keep(s, kGroup);
  std::vector<int64_t> want = g.get("dynamic/keep").to_vector<int64_t>();
  ASSERT_EQ(keep.size(), want.size());
  for (size_t i = 0; i < keep.size(); ++i) EXPECT_EQ(keep[i], want[i] != 0) << i;
}

TEST(RlAlgosGoldenTest, ReinforcePlusPlusReturnsAndWhitenedAdvantages) {
  GoldenFile g("rl_algos.h5");
  Tensor mask = g.get("mask"), logp = g.get("pg/old_logp"), ref = g.get("ref_logp");
  for (const char* key : {"rpp/gamma10", "rpp/gamma9"}) {
    const double gamma = std::string(key) == "rpp/gamma10" ? 1.0 : 0.9;
    ReinforcePpOutput out = reinforce_pp_advantages(g.get("rpp/score"), logp, ref, mask,
                                                    g.scalar("rpp/kl_coef"), gamma);
    EXPECT_TRUE(allclose(out.rewards, g.get("rpp/rewards"), kAtol, kRtol)) << key;
    EXPECT_TRUE(allclose(out.returns, g.get(std::string(key) + "/returns"), kAtol, kRtol)) << key;
    EXPECT_TRUE(allclose(out.advantages, g.get(std::string(key) + "/adv"), kAtol, kRtol)) << key;
  }
}

TEST(RlAlgosGoldenTest, ClippedPolicyLossUnderEachAggregation) {
  GoldenFile g("rl_algos.h5");
  Tensor mask = g.get("mask"), old = g.get("pg/old_logp"), adv = g.get("pg/adv");
  const std::pair<LossAggregation, const char*> modes[] = {
      {LossAggregation::TOKEN_MEAN, "token_mean"},
      {LossAggregation::SEQ_MEAN_TOKEN_MEAN, "seq_mean_token_mean"},
      {LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM, "seq_mean_token_sum_norm"}};
  for (auto [agg, name] : modes) {
    PgLossOptions o{.clip_low = 0.2, .clip_high = 0.28, .aggregation = agg, .norm_constant = 8};
    Tensor logp = leaf(g, "pg/logp");
    PgLoss pl = clipped_pg_loss(logp, old, adv, mask, o);
    const std::string k = std::string("pg/") + name;
    EXPECT_NEAR(pl.loss.item(), g.scalar(k + "/loss"), kAtol) << name;
    EXPECT_DOUBLE_EQ(pl.clip_fraction, g.scalar("pg/clipfrac"));
    EXPECT_DOUBLE_EQ(pl.clip_low_fraction, g.scalar("pg/clipfrac_low"));
    EXPECT_DOUBLE_EQ(pl.clip_high_fraction, g.scalar("pg/clipfrac_high"));
    pl.loss.backward();
    EXPECT_TRUE(allclose(logp.grad(), g.get(k + "/dlogp"), kAtol, kRtol)) << name;
  }
}

TEST(RlAlgosGoldenTest, KlLossTermsK1K2K3) {
  GoldenFile g("rl_algos.h5");
  Tensor mask = g.get("mask"), ref = g.get("ref_logp");
  for (KlEstimator e : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3}) {
    const std::string k = std::string("kl/") + kl_estimator_name(e);
    EXPECT_TRUE(
        allclose(kl_estimate(g.get("pg/logp"), ref, mask, e), g.get(k + "/estimate"), kAtol, kRtol))
        << k;
    for (auto [agg, name] :
         {std::pair{LossAggregation::TOKEN_MEAN, "token_mean"},
          std::pair{LossAggregation::SEQ_MEAN_TOKEN_MEAN, "seq_mean_token_mean"}}) {
      Tensor logp = leaf(g, "pg/logp");
      Tensor loss = kl_loss(logp, ref, mask, e, {.aggregation = agg});
      EXPECT_NEAR(loss.item(), g.scalar(k + "/" + name + "/loss"), kAtol) << k << name;
      loss.backward();
      EXPECT_TRUE(allclose(logp.grad(), g.get(k + "/" + name + "/dlogp"), kAtol, kRtol))
          << k << name;
    }
  }
}

TEST(RlAlgosGoldenTest, IpoConservativeDpoAndSimpo) {
  GoldenFile g("rl_algos.h5");
  Tensor rc = g.get("pref/ref_chosen"), rr = g.get("pref/ref_rejected");
  const double beta = g.scalar("pref/beta");
  for (const char* name : {"ipo", "cdpo", "simpo"}) {
    Tensor pc = leaf(g, "pref/policy_chosen"), pr = leaf(g, "pref/policy_rejected");
    DpoOutput d;
    if (std::string(name) == "ipo") d = ipo_loss(pc, pr, rc, rr, beta);
    if (std::string(name) == "cdpo")
      d = cdpo_loss(pc, pr, rc, rr, beta, g.scalar("cdpo/label_smoothing"));
    if (std::string(name) == "simpo") {
      d = simpo_loss(pc, pr, g.get("simpo/chosen_len"), g.get("simpo/rejected_len"),
                     g.scalar("simpo/beta"), g.scalar("simpo/gamma"));
      EXPECT_TRUE(allclose(d.chosen_rewards, g.get("simpo/chosen_rewards"), kAtol, kRtol));
      EXPECT_TRUE(allclose(d.rejected_rewards, g.get("simpo/rejected_rewards"), kAtol, kRtol));
    }
    EXPECT_NEAR(d.loss.item(), g.scalar(std::string(name) + "/loss"), kAtol) << name;
    d.loss.backward();
    EXPECT_TRUE(allclose(pc.grad(), g.get(std::string(name) + "/dchosen"), kAtol, kRtol)) << name;
    EXPECT_TRUE(allclose(pr.grad(), g.get(std::string(name) + "/drejected"), kAtol, kRtol)) << name;
  }
}

TEST(RlAlgosGoldenTest, OverlongPenalty) {
  GoldenFile g("rl_algos.h5");
  std::vector<double> p = overlong_penalty(g.get("overlong/lengths").to_vector<int64_t>(), 20, 5);
  EXPECT_TRUE(allclose(Tensor::from_vector(p, {int64_t(p.size())}), g.get("overlong/penalty"),
                       kAtol, kRtol));
}

}  // namespace
}  // namespace loom::rlhf
