// Reward-model, log-prob, KL, entropy and DPO losses: values against closed forms, gradients
// against closed forms and against finite differences (gradcheck, f64), masked statistics.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"
#include "rlhf/Losses.h"
#include "tests/support/GradCheck.h"

namespace loom::rlhf {
namespace {

using loom::testing::allclose;
using loom::testing::gradcheck;

Tensor vec(const std::vector<double>& v) { return Tensor::from_vector(v, {int64_t(v.size())}); }
double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// -log sigmoid(d) in a form that is exact for large |d| (reference for the tests).
double neg_log_sigmoid(double d) {
  return d > 0 ? std::log1p(std::exp(-d)) : -d + std::log1p(std::exp(d));
}

TEST(LossesTest, SoftplusIsStableAndHasSigmoidGradient) {
  Tensor x = vec({-800, -30, -1, 0, 0.5, 30, 800}).set_requires_grad(true);
  Tensor y = softplus(x);
  std::vector<double> got = y.to_vector<double>();
  const std::vector<double> xs = {-800, -30, -1, 0, 0.5, 30, 800};
  for (size_t i = 0; i < xs.size(); ++i) {
    // log1p-based reference; the op computes log(1 + e) so tiny values differ by < 1 ulp of 1.
    EXPECT_NEAR(got[i], neg_log_sigmoid(-xs[i]), 1e-15 + 1e-15 * std::abs(xs[i])) << xs[i];
  }
  sum(y).backward();
  std::vector<double> g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_NEAR(g[i], sigmoid_d(xs[i]), 1e-15) << xs[i];
  Generator gen(3);
  // PyTorch gradcheck defaults (STYLE.md section 8).
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return softplus(in[0] * 3.0); },
                        {Tensor::randn({4, 3}, gen, DType::F64).set_requires_grad(true)}));
}

TEST(LossesTest, PairwiseRewardLossMatchesClosedFormAndGradient) {
  const std::vector<double> c = {1.0, -2.0, 0.3, 40.0}, r = {0.5, 1.0, 0.3, -40.0};
  Tensor rc = vec(c).set_requires_grad(true), rr = vec(r).set_requires_grad(true);
  Tensor loss = pairwise_reward_loss(rc, rr);
  double want = 0;
  for (size_t i = 0; i < c.size(); ++i) want += neg_log_sigmoid(c[i] - r[i]) / 4.0;
  EXPECT_NEAR(loss.item(), want, 1e-15);  // same formula in f64: rounding only
  loss.backward();
  std::vector<double> gc = rc.grad().to_vector<double>(), gr = rr.grad().to_vector<double>();
  for (size_t i = 0; i < c.size(); ++i) {
    // d/drc -log sigmoid(rc - rr) = -sigmoid(rr - rc); mean over 4 pairs.
    EXPECT_NEAR(gc[i], -sigmoid_d(r[i] - c[i]) / 4.0, 1e-16);
    EXPECT_NEAR(gr[i], sigmoid_d(r[i] - c[i]) / 4.0, 1e-16);
  }
  RewardMetrics m = reward_metrics(vec(c), vec(r));
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);  // pairs 0 and 3 win; the tie (pair 2) counts as wrong
  EXPECT_DOUBLE_EQ(m.mean_margin, (0.5 - 3.0 + 0.0 + 80.0) / 4.0);
  Generator gen(11);
  // PyTorch gradcheck defaults (STYLE.md section 8).
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return pairwise_reward_loss(in[0], in[1]); },
                {Tensor::randn({5}, gen, DType::F64).set_requires_grad(true),
                 Tensor::randn({5}, gen, DType::F64).set_requires_grad(true)}));
  EXPECT_THROW(pairwise_reward_loss(vec({1, 2}), vec({1})), ValueError);
}

TEST(LossesTest, TokenLogprobsGatherLabelsAndZeroIgnored) {
  Generator gen(5);
  const int64_t B = 2, T = 3, V = 4;
  Tensor logits = Tensor::randn({B, T, V}, gen, DType::F64);
  Tensor labels = Tensor::from_vector<int64_t>({1, 3, -100, 0, -100, 2}, {B, T});
  Tensor lp = token_logprobs(logits, labels);
  ASSERT_EQ(lp.shape(), (Shape{B, T}));
  std::vector<double> lg = logits.to_vector<double>(), got = lp.to_vector<double>();
  std::vector<int64_t> lab = labels.to_vector<int64_t>();
  for (int64_t i = 0; i < B * T; ++i) {
    if (lab[size_t(i)] < 0) {
      EXPECT_EQ(got[size_t(i)], 0.0);
      continue;
    }
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(lg[size_t(i * V + v)]);
    // f64 log-softmax vs direct log-sum-exp of small logits: rounding only.
    EXPECT_NEAR(got[size_t(i)], lg[size_t(i * V + lab[size_t(i)])] - std::log(z), 1e-14);
  }
  // PyTorch gradcheck defaults (STYLE.md section 8); logits seen through a transpose.
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return token_logprobs(in[0].transpose(0, 1), labels); },
      {Tensor::randn({T, B, V}, gen, DType::F64).set_requires_grad(true)}));
  EXPECT_THROW(token_logprobs(logits, Tensor::from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {B, T})),
               ValueError);  // 4, 5, 6 are outside the vocabulary
}

TEST(LossesTest, KlPenaltyAndRewardsPerToken) {
  Tensor logp = Tensor::from_vector<double>({-1.0, -2.0, -0.5, -3.0, -1.5, -0.1}, {2, 3})
                    .set_requires_grad(true);
  Tensor ref = Tensor::from_vector<double>({-1.5, -1.0, -0.5, -2.0, -9.0, -0.2}, {2, 3});
  Tensor mask = Tensor::from_vector<double>({0, 1, 1, 1, 1, 0}, {2, 3});
  Tensor kl = kl_penalty(logp, ref, mask);
  EXPECT_EQ(kl.to_vector<double>(), (std::vector<double>{0.0, -1.0, 0.0, -1.0, 7.5, 0.0}));
  sum(kl).backward();
  EXPECT_EQ(logp.grad().to_vector<double>(), mask.to_vector<double>());
  // r = -0.1 * kl on masked tokens, plus the score at the last masked token of each row.
  Tensor r = compute_rewards(Tensor::from_vector<double>({2.0, -1.0}, {2}), logp, ref, mask, 0.1);
  std::vector<double> got = r.to_vector<double>();
  const std::vector<double> want = {0.0, 0.1, 2.0, 0.1, -0.75 - 1.0, 0.0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-15) << i;
}

TEST(LossesTest, EntropyFromLogits) {
  Tensor uniform = Tensor::zeros({2, 1, 5}, DType::F64);
  std::vector<double> h = entropy_from_logits(uniform).to_vector<double>();
  EXPECT_NEAR(h[0], std::log(5.0), 1e-15);  // entropy of the uniform distribution
  Tensor peaked = Tensor::from_vector<double>({0, 0, 100}, {1, 1, 3});
  // The exact entropy is about 2 * 100 * e^-100 = 7.4e-42.
  EXPECT_NEAR(entropy_from_logits(peaked).item(), 0.0, 1e-40);
  Generator gen(9);
  // PyTorch gradcheck defaults (STYLE.md section 8).
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return entropy_from_logits(in[0]); },
                        {Tensor::randn({2, 2, 4}, gen, DType::F64).set_requires_grad(true)}));
}

TEST(LossesTest, MaskedStatisticsAndWhitening) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 100}, {2, 2});
  Tensor m = Tensor::from_vector<double>({1, 1, 1, 0}, {2, 2});
  EXPECT_DOUBLE_EQ(masked_mean(x, m).item(), 2.0);
  EXPECT_DOUBLE_EQ(masked_var(x, m).item(), 1.0);  // unbiased: (1+0+1)/2
  EXPECT_DOUBLE_EQ(masked_var(x, m, false).item(), 2.0 / 3.0);
  std::vector<double> w = masked_whiten(x, m).to_vector<double>();
  // (x - 2) / sqrt(1 + 1e-8): the 1e-8 shifts the scale by 5e-9 relative.
  EXPECT_NEAR(w[0], -1.0, 1e-8);
  EXPECT_NEAR(w[1], 0.0, 1e-15);
  EXPECT_NEAR(w[2], 1.0, 1e-8);
  EXPECT_EQ(w[3], 0.0);
  std::vector<double> ws = masked_whiten(x, m, false).to_vector<double>();
  EXPECT_NEAR(ws[0], 1.0, 1e-8);
  EXPECT_NEAR(ws[2], 3.0, 1e-8);
  EXPECT_EQ(masked_mean(x, Tensor::zeros({2, 2}, DType::F64)).item(), 0.0);  // empty mask
  // A (1,2) f32 mask broadcasts over the rows and is converted to x's dtype.
  EXPECT_DOUBLE_EQ(masked_mean(x, Tensor::from_vector<float>({1, 0}, {1, 2})).item(), 2.0);
  Generator gen(2);
  // PyTorch gradcheck defaults (STYLE.md section 8).
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return masked_var(in[0], m); },
                        {Tensor::randn({2, 2}, gen, DType::F64).set_requires_grad(true)}));
  Tensor vals = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(select_at(vals, Tensor::from_vector<int64_t>({2, 0}, {2})).to_vector<double>(),
            (std::vector<double>{3, 4}));
}

TEST(LossesTest, DpoLossMatchesClosedForm) {
  const double beta = 0.1;
  const std::vector<double> pc = {-10, -20, -5}, pr = {-12, -15, -5}, rc = {-11, -18, -6},
                            rr = {-11, -16, -4};
  Tensor tpc = vec(pc).set_requires_grad(true), tpr = vec(pr).set_requires_grad(true);
  DpoOutput d = dpo_loss(tpc, tpr, vec(rc), vec(rr), beta);
  double want = 0, acc = 0, margin = 0;
  std::vector<double> h(3);
  for (size_t i = 0; i < 3; ++i) {
    h[i] = (pc[i] - rc[i]) - (pr[i] - rr[i]);  // {2, -1, 2}
    want += neg_log_sigmoid(beta * h[i]) / 3.0;
    acc += beta * h[i] > 0 ? 1.0 / 3.0 : 0.0;
    margin += beta * h[i] / 3.0;
  }
  EXPECT_NEAR(d.loss.item(), want, 1e-15);  // same formula in f64: rounding only
  EXPECT_NEAR(d.accuracy, acc, 1e-15);
  EXPECT_NEAR(d.mean_margin, margin, 1e-15);
  EXPECT_TRUE(allclose(d.chosen_rewards, vec({0.1, -0.2, 0.1}), 1e-15, 0));
  EXPECT_FALSE(d.chosen_rewards.requires_grad());
  d.loss.backward();
  std::vector<double> gc = tpc.grad().to_vector<double>(), gr = tpr.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) {
    // d/dpc -log sigmoid(beta*h) = -beta * sigmoid(-beta*h) / B; d/dpr is its negative.
    EXPECT_NEAR(gc[i], -beta * sigmoid_d(-beta * h[i]) / 3.0, 1e-16);
    EXPECT_NEAR(gr[i], beta * sigmoid_d(-beta * h[i]) / 3.0, 1e-16);
  }
  Generator gen(4);
  Tensor c1 = Tensor::randn({4}, gen, DType::F64), c2 = Tensor::randn({4}, gen, DType::F64);
  // PyTorch gradcheck defaults (STYLE.md section 8); references held constant.
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return dpo_loss(in[0], in[1], c1, c2, 0.5).loss; },
      {Tensor::randn({4}, gen, DType::F64).set_requires_grad(true),
       Tensor::randn({4}, gen, DType::F64).set_requires_grad(true)}));
  EXPECT_THROW(dpo_loss(tpc, tpr, vec(rc), vec(rr), 0.0), ValueError);
}

TEST(LossesTest, IpoLossIsSquaredDistanceToHalfInverseBeta) {
  // beta 0.5: target 1/(2 beta) = 1. pc - rc = {1, -2, 1}, pr - rr = {-1, 1, 0}, h = {2, -3, 1}.
  Tensor pc = vec({-10, -20, -5}).set_requires_grad(true);
  Tensor pr = vec({-12, -15, -5}).set_requires_grad(true);
  DpoOutput d = ipo_loss(pc, pr, vec({-11, -18, -6}), vec({-11, -16, -5}), 0.5);
  const std::vector<double> h = {2, -3, 1};
  EXPECT_DOUBLE_EQ(d.loss.item(), (1.0 + 16.0 + 0.0) / 3);               // mean (h - 1)^2
  EXPECT_TRUE(allclose(d.chosen_rewards, vec({0.5, -1.0, 0.5}), 0, 0));  // beta * (pc - rc)
  EXPECT_TRUE(allclose(d.rejected_rewards, vec({-0.5, 0.5, 0.0}), 0, 0));
  EXPECT_DOUBLE_EQ(d.accuracy, 2.0 / 3);  // rows 0 and 2
  EXPECT_DOUBLE_EQ(d.mean_margin, 0.0);   // 0.5 * (2 - 3 + 1) / 3
  d.loss.backward();
  std::vector<double> gc = pc.grad().to_vector<double>(), gr = pr.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(gc[i], 2 * (h[i] - 1) / 3);  // d/dpc (h - 1)^2 / B
    EXPECT_DOUBLE_EQ(gr[i], -2 * (h[i] - 1) / 3);
  }
  EXPECT_THROW(ipo_loss(pc, pr, vec({1, 2, 3}), vec({1, 2, 3}), 0.0), ValueError);
}

TEST(LossesTest, ConservativeDpoMixesBothLabelsAndReducesToDpo) {
  const double beta = 0.1, eps = 0.2;
  const std::vector<double> pc = {-10, -20, -5}, pr = {-12, -15, -5}, rc = {-11, -18, -6},
                            rr = {-11, -16, -4};
  Tensor tpc = vec(pc).set_requires_grad(true), tpr = vec(pr).set_requires_grad(true);
  DpoOutput d = cdpo_loss(tpc, tpr, vec(rc), vec(rr), beta, eps);
  double want = 0;
  std::vector<double> z(3);
  for (size_t i = 0; i < 3; ++i) {
    z[i] = beta * ((pc[i] - rc[i]) - (pr[i] - rr[i]));  // {0.2, -0.1, 0.2}
    want += ((1 - eps) * neg_log_sigmoid(z[i]) + eps * neg_log_sigmoid(-z[i])) / 3;
  }
  EXPECT_NEAR(d.loss.item(), want, 1e-15);  // same formula in f64: rounding only
  d.loss.backward();
  std::vector<double> gc = tpc.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) {
    // d/dz: -(1-eps) sigmoid(-z) + eps sigmoid(z); dz/dpc = beta; mean over 3.
    const double want_g = beta * (-(1 - eps) * sigmoid_d(-z[i]) + eps * sigmoid_d(z[i])) / 3;
    EXPECT_NEAR(gc[i], want_g, 1e-16);
  }
  // label_smoothing 0 is plain DPO, bit for bit.
  EXPECT_EQ(cdpo_loss(vec(pc), vec(pr), vec(rc), vec(rr), beta, 0.0).loss.item(),
            dpo_loss(vec(pc), vec(pr), vec(rc), vec(rr), beta).loss.item());
  EXPECT_THROW(cdpo_loss(tpc, tpr, vec(rc), vec(rr), beta, 0.5), ValueError);
}

TEST(LossesTest, SimpoUsesLengthNormalisedLogprobsAndMargin) {
  // lp/|y|: chosen -10/5 = -2 and -9/3 = -3; rejected -12/4 = -3 and -4/2 = -2.
  // beta 2, gamma 1: z = beta*(c - r) - gamma = {1, -3}.
  Tensor pc = vec({-10, -9}).set_requires_grad(true), pr = vec({-12, -4}).set_requires_grad(true);
  Tensor lc = vec({5, 3}), lr = vec({4, 2});
  DpoOutput d = simpo_loss(pc, pr, lc, lr, 2.0, 1.0);
  EXPECT_NEAR(d.loss.item(), (neg_log_sigmoid(1) + neg_log_sigmoid(-3)) / 2, 1e-15);
  EXPECT_TRUE(allclose(d.chosen_rewards, vec({-4, -6}), 0, 0));  // beta * lp / |y|
  EXPECT_TRUE(allclose(d.rejected_rewards, vec({-6, -4}), 0, 0));
  EXPECT_DOUBLE_EQ(d.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(d.mean_margin, (2.0 - 2.0) / 2);
  d.loss.backward();
  std::vector<double> gc = pc.grad().to_vector<double>(), gr = pr.grad().to_vector<double>();
  // d/dpc -log sigmoid(z) = -sigmoid(-z) * beta / |c| / B; d/dpr = +sigmoid(-z) * beta / |r| / B.
  EXPECT_NEAR(gc[0], -sigmoid_d(-1) * 2 / 5 / 2, 1e-16);
  EXPECT_NEAR(gc[1], -sigmoid_d(3) * 2 / 3 / 2, 1e-16);
  EXPECT_NEAR(gr[0], sigmoid_d(-1) * 2 / 4 / 2, 1e-16);
  EXPECT_NEAR(gr[1], sigmoid_d(3) * 2 / 2 / 2, 1e-16);
  EXPECT_THROW(simpo_loss(pc, pr, vec({5, 0}), lr, 2.0, 1.0), ValueError);  // empty response
}

TEST(LossesTest, GradcheckOfPreferenceLossVariants) {
  Generator gen(6);
  Tensor c1 = Tensor::randn({4}, gen, DType::F64), c2 = Tensor::randn({4}, gen, DType::F64);
  Tensor n1 = Tensor::from_vector<double>({3, 7, 1, 12}, {4});
  Tensor n2 = Tensor::from_vector<double>({5, 2, 9, 4}, {4});
  // PyTorch gradcheck defaults (STYLE.md section 8); references and lengths held constant.
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ipo_loss(in[0], in[1], c1, c2, 0.7).loss +
               cdpo_loss(in[0], in[1], c1, c2, 0.5, 0.3).loss +
               simpo_loss(in[0], in[1], n1, n2, 2.5, 1.2).loss;
      },
      {Tensor::randn({4}, gen, DType::F64).set_requires_grad(true),
       Tensor::randn({4}, gen, DType::F64).set_requires_grad(true)}));
}

}  // namespace
}  // namespace loom::rlhf
