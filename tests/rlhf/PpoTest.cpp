// PPO pieces: GAE against a hand-computed example (with prompt, padding and a hole in the mask),
// the clipped surrogate (clipped_pg_loss with PPO's symmetric clip and token mean) and the clipped
// value loss in each clip case with their gradients, and gradcheck (f64) of both losses on random
// inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/Elementwise.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"
#include "rlhf/Losses.h"
#include "rlhf/PolicyGradient.h"
#include "rlhf/Ppo.h"
#include "tests/support/GradCheck.h"

namespace loom::rlhf {
namespace {

using loom::testing::gradcheck;

Tensor row(const std::vector<double>& v) { return Tensor::from_vector(v, {1, int64_t(v.size())}); }

// PPO's policy loss: symmetric clip eps, token mean over the mask.
PgLoss ppo_policy_loss(const Tensor& logp, const Tensor& old, const Tensor& adv, const Tensor& mask,
                       double eps) {
  return clipped_pg_loss(logp, old, adv, mask,
                         {.clip_low = eps, .clip_high = eps,
                          .aggregation = LossAggregation::TOKEN_MEAN});
}

TEST(PpoTest, GaeMatchesHandComputedExample) {
  // gamma = 0.9, lam = 0.8 (gamma*lam = 0.72).
  // Row 0: prompt at t=0, response t=1..3, padding at t=4 (values there must be ignored).
  //   t=3: delta = 1 - 0.3 = 0.7                      A = 0.7          R = 1.0
  //   t=2: delta = 0.9*0.3 - 0.4 = -0.13              A = -0.13 + 0.72*0.7 = 0.374     R = 0.774
  //   t=1: delta = 0.9*0.4 - 0.5 = -0.14              A = -0.14 + 0.72*0.374 = 0.12928 R = 0.62928
  // Row 1: mask 1,0,1,0,0 (t=1 is, e.g., a user turn between assistant turns).
  //   t=2: delta = -1 - 0.1 = -1.1                    A = -1.1         R = -1.0
  //   t=0: delta = 0.5 + 0.9*0.1 - 0.2 = 0.39         A = 0.39 - 0.72*1.1 = -0.402     R = -0.202
  Tensor rewards = Tensor::from_vector<double>({9, 0, 0, 1, 7, 0.5, 3, -1, 0, 0}, {2, 5});
  Tensor values = Tensor::from_vector<double>({5, 0.5, 0.4, 0.3, 9, 0.2, 8, 0.1, 0, 0}, {2, 5});
  Tensor mask = Tensor::from_vector<double>({0, 1, 1, 1, 0, 1, 0, 1, 0, 0}, {2, 5});
  GaeOutput g = gae(rewards, values, mask, 0.9, 0.8);
  const std::vector<double> adv = {0, 0.12928, 0.374, 0.7, 0, -0.402, 0, -1.1, 0, 0};
  const std::vector<double> ret = {0, 0.62928, 0.774, 1.0, 0, -0.202, 0, -1.0, 0, 0};
  std::vector<double> ga = g.advantages.to_vector<double>(), gr = g.returns.to_vector<double>();
  for (size_t i = 0; i < adv.size(); ++i) {
    EXPECT_NEAR(ga[i], adv[i], 1e-14) << i;  // a few f64 operations on O(1) values
    EXPECT_NEAR(gr[i], ret[i], 1e-14) << i;
  }
  // gamma = lam = 1: A_t is the sum of the remaining rewards minus V_t (Monte-Carlo).
  GaeOutput mc = gae(row({1, 2, 3}), row({0.5, 0.25, 4}), row({1, 1, 1}), 1.0, 1.0);
  EXPECT_EQ(mc.advantages.to_vector<double>(), (std::vector<double>{5.5, 4.75, -1}));
  EXPECT_EQ(g.advantages.dtype(), DType::F64);
  EXPECT_THROW(gae(rewards, row({1, 2}), mask, 1, 1), ValueError);
}

TEST(PpoTest, ClippedSurrogateCasesAndGradient) {
  // eps = 0.2. Per token: ratio, advantage -> max(-A r, -A clip(r)) and d/dlogp = -A r or 0.
  //   r=1.5 A=+1: max(-1.5, -1.2) = -1.2  clipped, grad 0
  //   r=1.5 A=-1: max( 1.5,  1.2) =  1.5  unclipped, grad 1.5
  //   r=0.5 A=+1: max(-0.5, -0.8) = -0.5  unclipped, grad -0.5
  //   r=0.5 A=-1: max( 0.5,  0.8) =  0.8  clipped, grad 0
  //   r=1.1 A=+2: max(-2.2, -2.2) = -2.2  inside the range (tie), grad -2.2
  //   masked-out token with a huge ratio and advantage: no effect.
  const std::vector<double> r = {1.5, 1.5, 0.5, 0.5, 1.1, 50.0}, a = {1, -1, 1, -1, 2, 1e6};
  std::vector<double> lr;
  for (double x : r) lr.push_back(std::log(x));
  Tensor old = row({-1, -2, -3, -0.5, -1.25, -4});
  Tensor logp = (old + row(lr)).detach().set_requires_grad(true);
  Tensor mask = row({1, 1, 1, 1, 1, 0});
  PgLoss pl = ppo_policy_loss(logp, old, row(a), mask, 0.2);
  // Values are O(1) sums of five terms in f64; log/exp round trips add ~1e-16.
  EXPECT_NEAR(pl.loss.item(), (-1.2 + 1.5 - 0.5 + 0.8 - 2.2) / 5.0, 1e-14);
  EXPECT_DOUBLE_EQ(pl.clip_fraction, 2.0 / 5.0);
  double kl = 0;
  for (size_t i = 0; i < 5; ++i) kl += 0.5 * lr[i] * lr[i] / 5.0;
  EXPECT_NEAR(pl.approx_kl, kl, 1e-14);
  pl.loss.backward();
  std::vector<double> g = logp.grad().to_vector<double>();
  const std::vector<double> want = {0, 1.5 / 5, -0.5 / 5, 0, -2.2 / 5, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(g[i], want[i], 1e-14) << i;
}

TEST(PpoTest, ClippedValueLossCasesAndGradient) {
  // clip = 0.2; loss = 0.5 * mean max((v-R)^2, (v_clip-R)^2).
  //   v=0.5 old=0 R=1:     v_clip=0.2  -> max(0.25, 0.64) = 0.64 clipped, grad 0
  //   v=0.1 old=0 R=1:     v_clip=0.1  -> 0.81 (tie, inside range), grad 2(v-R) = -1.8
  //   v=-1  old=0 R=-0.5:  v_clip=-0.2 -> max(0.25, 0.09) = 0.25 unclipped, grad -1
  Tensor v = row({0.5, 0.1, -1}).set_requires_grad(true);
  ValueLoss vl = ppo_value_loss(v, row({0, 0, 0}), row({1, 1, -0.5}), row({1, 1, 1}), 0.2);
  // O(1) values, a handful of f64 operations.
  EXPECT_NEAR(vl.loss.item(), 0.5 * (0.64 + 0.81 + 0.25) / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(vl.clip_fraction, 1.0 / 3.0);
  vl.loss.backward();
  std::vector<double> g = v.grad().to_vector<double>();
  const std::vector<double> want = {0, 0.5 * -1.8 / 3.0, 0.5 * -1.0 / 3.0};
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(g[i], want[i], 1e-15) << i;
}

TEST(PpoTest, LossesPassGradcheck) {
  Generator gen(21);
  const Shape s{2, 6};
  // Log-ratios in [-0.5, 0.5] so that with eps = 0.2 some tokens are clipped and some are not.
  Tensor old = Tensor::randn(s, gen, DType::F64);
  Tensor delta = Tensor::rand(s, gen, DType::F64, Device::cpu(), -0.5, 0.5);
  Tensor adv = Tensor::randn(s, gen, DType::F64);
  Tensor mask = Tensor::from_vector<double>({0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0}, s);
  PgLoss probe = ppo_policy_loss(old + delta, old, adv, mask, 0.2);
  EXPECT_GT(probe.clip_fraction, 0.0);
  EXPECT_LT(probe.clip_fraction, 1.0);
  // PyTorch gradcheck defaults (STYLE.md section 8).
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ppo_policy_loss(in[0], old, adv, mask, 0.2).loss;
      },
      {(old + delta).detach().set_requires_grad(true)}));
  Tensor old_v = Tensor::randn(s, gen, DType::F64);
  Tensor ret = Tensor::randn(s, gen, DType::F64);
  Tensor v = (old_v + Tensor::rand(s, gen, DType::F64, Device::cpu(), -0.5, 0.5)).detach();
  ValueLoss vprobe = ppo_value_loss(v, old_v, ret, mask, 0.2);
  EXPECT_GT(vprobe.clip_fraction, 0.0);
  EXPECT_LT(vprobe.clip_fraction, 1.0);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ppo_value_loss(in[0], old_v, ret, mask, 0.2).loss;
      },
      {v.set_requires_grad(true)}));
}

TEST(PpoTest, EntropyBonusIsTheMaskedMeanEntropy) {
  // t=0 uniform over 4 (entropy log 4), t=1 peaked but masked out: the bonus term is log 4.
  Tensor logits = Tensor::from_vector<double>({0, 0, 0, 0, 50, 0, 0, 0}, {1, 2, 4});
  EXPECT_NEAR(masked_mean(entropy_from_logits(logits), row({1, 0})).item(), std::log(4.0), 1e-15);
}

}  // namespace
}  // namespace loom::rlhf
