// Clipped policy-gradient loss (asymmetric clipping, three aggregations, divisor overrides) and
// the k1/k2/k3 KL loss terms: values, clip fractions and gradients against hand-worked cases,
// plus gradcheck (f64) of the composed backward.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"
#include "rlhf/PolicyGradient.h"
#include "tests/support/GradCheck.h"

namespace loom::rlhf {
namespace {

using loom::testing::allclose;
using loom::testing::gradcheck;

// Six tokens (B=2, T=3), the last of row 1 masked out. Ratios r and advantages A:
//   (0,0) r 1.5, A  1: -A*r = -1.5 < -A*1.28 = -1.28  -> clipped (high), l = -1.28, grad 0
//   (0,1) r 0.5, A -1:  0.5 <  0.8 (clip at 1-0.2)     -> clipped (low),  l =  0.8,  grad 0
//   (0,2) r 1,   A  2: tie                              -> unclipped,      l = -2,   grad -A*r = -2
//   (1,0) r 1.1, A -1: inside the range                 ->                 l =  1.1,  grad  1.1
//   (1,1) r 0.9, A  1: inside the range                 ->                 l = -0.9,  grad -0.9
//   (1,2) masked (log r = 1000, A = inf): contributes nothing, and no NaN (exp would overflow).
struct HandCase {
  Tensor old = Tensor::from_vector<double>({-1, -2, -0.5, -3, -1, -2}, {2, 3});
  Tensor log_r = Tensor::from_vector<double>(
      {std::log(1.5), std::log(0.5), 0.0, std::log(1.1), std::log(0.9), 1000.0}, {2, 3});
  Tensor adv = Tensor::from_vector<double>(
      {1, -1, 2, -1, 1, std::numeric_limits<double>::infinity()}, {2, 3});
  Tensor mask = Tensor::from_vector<double>({1, 1, 1, 1, 1, 0}, {2, 3});
  std::vector<double> grad = {0, 0, -2, 1.1, -0.9, 0};  // d l / d logp per token
  Tensor logp() const { return (old + log_r).detach().set_requires_grad(true); }
};

PgLossOptions dapo_clip(LossAggregation agg) {
  return {.clip_low = 0.2, .clip_high = 0.28, .aggregation = agg, .norm_constant = 4};
}

// Runs the loss and checks its value and gradient (the per-token gradients scaled by `scale`).
void expect_loss(const HandCase& h, const PgLossOptions& o, double want,
                 const std::vector<double>& scale) {
  Tensor logp = h.logp();
  PgLoss pl = clipped_pg_loss(logp, h.old, h.adv, h.mask, o);
  // Hand values go through exp(log(r)) and a short sum: a few ulps.
  EXPECT_NEAR(pl.loss.item(), want, 1e-15) << loss_aggregation_name(o.aggregation);
  pl.loss.backward();
  std::vector<double> g = logp.grad().to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_NEAR(g[i], h.grad[i] * scale[i], 1e-15) << loss_aggregation_name(o.aggregation) << i;
  }
}

TEST(PolicyGradientTest, AsymmetricClipAndAggregationsMatchHandValues) {
  HandCase h;
  const double s = -1.28 + 0.8 - 2 + 1.1 - 0.9;  // -2.28 over 5 tokens; row sums -2.48 and 0.2
  expect_loss(h, dapo_clip(LossAggregation::TOKEN_MEAN), s / 5, std::vector<double>(6, 1.0 / 5));
  expect_loss(h, dapo_clip(LossAggregation::SEQ_MEAN_TOKEN_MEAN), (-2.48 / 3 + 0.2 / 2) / 2,
              {1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 4, 1.0 / 4, 0});
  expect_loss(h, dapo_clip(LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM), s / (4 * 2),
              std::vector<double>(6, 1.0 / 8));
  // Divisor overrides (data parallelism): 10 global tokens, 4 global sequences.
  PgLossOptions o = dapo_clip(LossAggregation::TOKEN_MEAN);
  o.token_count = 10;
  expect_loss(h, o, s / 10, std::vector<double>(6, 1.0 / 10));
  o = dapo_clip(LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM);
  o.sequence_count = 4;
  expect_loss(h, o, s / 16, std::vector<double>(6, 1.0 / 16));

  PgLoss pl =
      clipped_pg_loss(h.logp(), h.old, h.adv, h.mask, dapo_clip(LossAggregation::TOKEN_MEAN));
  EXPECT_DOUBLE_EQ(pl.clip_fraction, 2.0 / 5);
  EXPECT_DOUBLE_EQ(pl.clip_low_fraction, 1.0 / 5);
  EXPECT_DOUBLE_EQ(pl.clip_high_fraction, 1.0 / 5);
  const double l15 = std::log(1.5), l05 = std::log(0.5), l11 = std::log(1.1), l09 = std::log(0.9);
  EXPECT_NEAR(pl.approx_kl, 0.5 * (l15 * l15 + l05 * l05 + l11 * l11 + l09 * l09) / 5, 1e-16);
  // Symmetric clip at 0.2: token (0,0) is clipped at 1.2 instead of 1.28.
  PgLoss sym = clipped_pg_loss(h.logp(), h.old, h.adv, h.mask, {.clip_low = 0.2, .clip_high = 0.2});
  EXPECT_NEAR(sym.loss.item(), (s + 1.28 - 1.2) / 5, 1e-15);
}

TEST(PolicyGradientTest, SequenceMeanCountsEmptyRowsAsZero) {
  // Row 1 has no response tokens: it adds 0 and still counts in B (TRL's clamp(min=1)).
  Tensor l = Tensor::from_vector<double>({1, 3, 7, 7}, {2, 2});
  Tensor m = Tensor::from_vector<double>({1, 1, 0, 0}, {2, 2});
  EXPECT_DOUBLE_EQ(
      aggregate_loss(l, m, {.aggregation = LossAggregation::SEQ_MEAN_TOKEN_MEAN}).item(), 1.0);
  EXPECT_DOUBLE_EQ(aggregate_loss(l, m, {}).item(), 2.0);  // token mean
  EXPECT_EQ(aggregate_loss(l, Tensor::zeros({2, 2}, DType::F64), {}).item(), 0.0);
  EXPECT_THROW(aggregate_loss(l, m, {.aggregation = LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM}),
               ValueError);  // needs norm_constant > 0
}

TEST(PolicyGradientTest, RejectsBadShapesAndClipRanges) {
  HandCase h;
  EXPECT_THROW(clipped_pg_loss(h.logp(), h.old.narrow(1, 0, 2), h.adv, h.mask, {}), ValueError);
  EXPECT_THROW(clipped_pg_loss(h.logp(), h.old, h.adv, h.mask, {.clip_low = 1.0}), ValueError);
  EXPECT_THROW(clipped_pg_loss(h.logp(), h.old, h.adv, h.mask, {.clip_high = 0.0}), ValueError);
}

TEST(PolicyGradientTest, KlEstimatorsAndTheirGradients) {
  // delta = logp - ref = {0.5, -1, 2}; k1 = delta, k2 = delta^2 / 2, k3 = exp(-delta) + delta - 1.
  // d/dlogp: k1 1, k2 delta, k3 1 - exp(-delta).
  const std::vector<double> delta = {0.5, -1.0, 2.0};
  Tensor ref = Tensor::from_vector<double>({-1, -2, -3}, {1, 3});
  Tensor mask = Tensor::ones({1, 3}, DType::F64);
  for (KlEstimator e : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3}) {
    Tensor logp = (ref + Tensor::from_vector(delta, {1, 3})).detach().set_requires_grad(true);
    Tensor loss = kl_loss(logp, ref, mask, e, {});
    double want = 0;
    std::vector<double> grad;
    for (double d : delta) {
      const double k[] = {d, 0.5 * d * d, std::exp(-d) + d - 1};
      const double dk[] = {1.0, d, 1 - std::exp(-d)};
      want += k[int(e)] / 3;  // token mean over 3 tokens
      grad.push_back(dk[int(e)] / 3);
    }
    // A few roundings of exp and of the token mean.
    EXPECT_NEAR(loss.item(), want, 1e-15) << kl_estimator_name(e);
    loss.backward();
    EXPECT_TRUE(allclose(logp.grad(), Tensor::from_vector(grad, {1, 3}), 1e-15, 1e-15))
        << kl_estimator_name(e);
  }
  // K1 can be negative; K2 and K3 never are. Masked tokens give 0.
  Tensor lp = Tensor::from_vector<double>({-3, 0}, {1, 2}),
         rf = Tensor::from_vector<double>({-1, -9}, {1, 2});
  Tensor m = Tensor::from_vector<double>({1, 0}, {1, 2});
  EXPECT_EQ(kl_estimate(lp, rf, m, KlEstimator::K1).to_vector<double>(),
            (std::vector<double>{-2, 0}));
  EXPECT_EQ(kl_estimate(lp, rf, m, KlEstimator::K2).to_vector<double>(),
            (std::vector<double>{2, 0}));
  EXPECT_NEAR(kl_estimate(lp, rf, m, KlEstimator::K3).to_vector<double>()[0], std::exp(2.0) - 3,
              1e-15);
  // A masked position where exp(ref - logp) would overflow: value and gradient stay 0, not NaN.
  Tensor far = Tensor::from_vector<double>({-3, -2000}, {1, 2}).set_requires_grad(true);
  Tensor k3 = kl_estimate(far, rf, m, KlEstimator::K3);
  EXPECT_EQ(k3.to_vector<double>()[1], 0.0);
  sum(k3).backward();
  EXPECT_EQ(far.grad().to_vector<double>()[1], 0.0);
}

TEST(PolicyGradientTest, GradcheckOfLossesUnderEveryAggregation) {
  Generator gen(17);
  const int64_t B = 3, T = 4;
  Tensor old = Tensor::randn({B, T}, gen, DType::F64);
  Tensor adv = Tensor::randn({B, T}, gen, DType::F64);
  Tensor ref = Tensor::randn({B, T}, gen, DType::F64);
  Tensor mask = Tensor::from_vector<double>({1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0}, {B, T});
  // Log-ratios at least 0.08 away from the clip bounds log(0.8) = -0.22 and log(1.2) = 0.18, so
  // no kink lies within eps; both the clipped (zero-gradient) and unclipped branches occur.
  Tensor lr = Tensor::from_vector<double>(
      {0.05, -0.6, 0.5, 0.02, -0.03, 0.7, -0.5, 0.01, 0.08, -0.07, 0.4, 0.0}, {B, T});
  for (LossAggregation agg : {LossAggregation::TOKEN_MEAN, LossAggregation::SEQ_MEAN_TOKEN_MEAN,
                              LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM}) {
    PgLossOptions o{.aggregation = agg, .norm_constant = 5};
    // PyTorch gradcheck defaults (STYLE.md section 8); logp seen through a transpose.
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          Tensor logp = in[0].t();
          return clipped_pg_loss(logp, old, adv, mask, o).loss +
                 kl_loss(logp, ref, mask, KlEstimator::K3, o) * 0.5 +
                 kl_loss(logp, ref, mask, KlEstimator::K2, o) * 0.25;
        },
        {(old + lr).t().contiguous().set_requires_grad(true)}))
        << loss_aggregation_name(agg);
  }
}

}  // namespace
}  // namespace loom::rlhf
