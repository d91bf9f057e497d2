// RLHF losses against PyTorch (tests/golden/gen_rlhf.py -> rlhf.h5, float64): token log-probs,
// entropy, PPO clipped surrogate (clipped_pg_loss) and value losses, masked whitening, the pairwise reward loss and
// the DPO loss, values and gradients.
#include <gtest/gtest.h>

#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "rlhf/Losses.h"
#include "rlhf/PolicyGradient.h"
#include "rlhf/Ppo.h"
#include "tests/support/GradCheck.h"
#include "tests/support/Golden.h"

namespace loom::rlhf {
namespace {

using loom::testing::allclose;
using loom::testing::GoldenFile;

// Both sides compute the same f64 formulas in different orders: agreement to ~1e-15 relative is
// rounding; 1e-12 leaves room for the log-sum-exp and summation orders.
constexpr double kAtol = 1e-12, kRtol = 1e-12;

Tensor leaf(const GoldenFile& g, const std::string& name) {
  return g.get(name).set_requires_grad(true);
}

TEST(RlhfGoldenTest, TokenLogprobsAndEntropy) {
  GoldenFile g("rlhf.h5");
  Tensor logits = leaf(g, "logprobs/logits");
  Tensor dy = g.get("logprobs/dy");
  Tensor lp = token_logprobs(logits, g.get("logprobs/labels"));
  EXPECT_TRUE(allclose(lp, g.get("logprobs/out"), kAtol, kRtol));
  sum(lp * dy).backward();
  EXPECT_TRUE(allclose(logits.grad(), g.get("logprobs/dlogits"), kAtol, kRtol));
  Tensor logits2 = leaf(g, "logprobs/logits");
  Tensor ent = entropy_from_logits(logits2);
  EXPECT_TRUE(allclose(ent, g.get("entropy/out"), kAtol, kRtol));
  sum(ent * dy).backward();
  EXPECT_TRUE(allclose(logits2.grad(), g.get("entropy/dlogits"), kAtol, kRtol));
}

TEST(RlhfGoldenTest, PpoPolicyAndValueLosses) {
  GoldenFile g("rlhf.h5");
  Tensor mask = g.get("mask");
  Tensor logp = leaf(g, "ppo/logp");
  // PPO's surrogate: clipped_pg_loss with a symmetric clip and the token mean.
  PgLoss pl = clipped_pg_loss(logp, g.get("ppo/old_logp"), g.get("ppo/adv"), mask,
                              {.clip_low = 0.2, .clip_high = 0.2,
                               .aggregation = LossAggregation::TOKEN_MEAN});
  EXPECT_NEAR(pl.loss.item(), g.scalar("ppo/loss"), kAtol);
  EXPECT_DOUBLE_EQ(pl.clip_fraction, g.scalar("ppo/clipfrac"));
  pl.loss.backward();
  EXPECT_TRUE(allclose(logp.grad(), g.get("ppo/dlogp"), kAtol, kRtol));
  Tensor v = leaf(g, "value/v");
  ValueLoss vl = ppo_value_loss(v, g.get("value/old"), g.get("value/returns"), mask, 0.2);
  EXPECT_NEAR(vl.loss.item(), g.scalar("value/loss"), kAtol);
  vl.loss.backward();
  EXPECT_TRUE(allclose(v.grad(), g.get("value/dv"), kAtol, kRtol));
  EXPECT_TRUE(allclose(masked_whiten(g.get("whiten/x"), mask), g.get("whiten/out"), kAtol, kRtol));
}

TEST(RlhfGoldenTest, PairwiseRewardAndDpoLosses) {
  GoldenFile g("rlhf.h5");
  Tensor rc = leaf(g, "reward/chosen"), rr = leaf(g, "reward/rejected");
  Tensor loss = pairwise_reward_loss(rc, rr);
  EXPECT_NEAR(loss.item(), g.scalar("reward/loss"), kAtol);
  loss.backward();
  EXPECT_TRUE(allclose(rc.grad(), g.get("reward/dchosen"), kAtol, kRtol));
  EXPECT_TRUE(allclose(rr.grad(), g.get("reward/drejected"), kAtol, kRtol));
  Tensor pc = leaf(g, "dpo/policy_chosen"), pr = leaf(g, "dpo/policy_rejected");
  DpoOutput d = dpo_loss(pc, pr, g.get("dpo/ref_chosen"), g.get("dpo/ref_rejected"),
                         g.scalar("dpo/beta"));
  EXPECT_NEAR(d.loss.item(), g.scalar("dpo/loss"), kAtol);
  d.loss.backward();
  EXPECT_TRUE(allclose(pc.grad(), g.get("dpo/dchosen"), kAtol, kRtol));
  EXPECT_TRUE(allclose(pr.grad(), g.get("dpo/drejected"), kAtol, kRtol));
}

}  // namespace
}  // namespace loom::rlhf
