// Clipped policy-gradient loss, loss aggregation and the KL loss term (see PolicyGradient.h).
// Everything is composed from core ops (exp, clamp, maximum, sums), so autograd derives the
// gradient; the counts that normalise the aggregates are constants (no gradient through them).
#include "rlhf/PolicyGradient.h"

#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"

namespace loom::rlhf {

namespace {

void check_bt(const Tensor& x, const Tensor& like, const char* op, const char* name) {
  LOOM_CHECK(x.dim() == 2 && x.shape() == like.shape(), op, ": expected ", name, " of shape ",
             like.shape(), " (B,T), got ", x.shape());
}

Tensor as_mask(const Tensor& mask, const Tensor& like) {
  Tensor m = mask.detach();
  return m.dtype() == like.dtype() ? m : m.to(like.dtype());
}

// x where mask != 0, else exactly 0 (unlike x * mask, which turns inf into NaN); the gradient
// outside the mask is 0.
Tensor zero_outside(const Tensor& x, const Tensor& mask) {
  Tensor zero = Tensor::scalar(0.0, x.dtype(), x.device());
  return where(ne(mask, zero), x, zero);
}

// Token mean over the mask of a Bool flag tensor.
double masked_fraction(const Tensor& flags, const Tensor& mask) {
  return masked_mean(flags.to(mask.dtype()), mask).item();
}

}  // namespace

const char* loss_aggregation_name(LossAggregation a) {
  switch (a) {
    case LossAggregation::TOKEN_MEAN:
      return "token_mean";
    case LossAggregation::SEQ_MEAN_TOKEN_MEAN:
      return "seq_mean_token_mean";
    case LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM:
      return "seq_mean_token_sum_norm";
  }
  return "?";
}

Tensor aggregate_loss(const Tensor& per_token, const Tensor& mask, const PgLossOptions& o) {
  check_bt(mask, per_token, "aggregate_loss", "mask");
  LOOM_CHECK(o.token_count >= 0 && o.sequence_count >= 0,
             "aggregate_loss: expected token_count and sequence_count >= 0, got ", o.token_count,
             " and ", o.sequence_count);
  Tensor m = as_mask(mask, per_token);
  Tensor masked = per_token * m;
  if (o.aggregation == LossAggregation::TOKEN_MEAN) {
    const double n = o.token_count > 0 ? o.token_count : sum(m).item();
    return n > 0 ? sum(masked) / n : sum(masked) * 0.0;
  }
  const double rows = o.sequence_count > 0 ? o.sequence_count : double(per_token.size(0));
  Tensor row_sums = sum(masked, {1});  // (B)
  if (o.aggregation == LossAggregation::SEQ_MEAN_TOKEN_MEAN) {
    Tensor row_tokens = clamp(sum(m, {1}), 1.0, 1e300);  // empty rows divide 0 by 1
    return rows > 0 ? sum(row_sums / row_tokens) / rows : sum(row_sums) * 0.0;
  }
  LOOM_CHECK(o.norm_constant > 0,
             "aggregate_loss: expected norm_constant > 0 for seq_mean_token_sum_norm (e.g. the "
             "maximum response length), got ",
             o.norm_constant);
  return rows > 0 ? sum(row_sums) / (o.norm_constant * rows) : sum(row_sums) * 0.0;
}

PgLoss clipped_pg_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& advantages,
                       const Tensor& mask, const PgLossOptions& o) {
  check_bt(logp, logp, "clipped_pg_loss", "logp");
  check_bt(old_logp, logp, "clipped_pg_loss", "old_logp");
  check_bt(advantages, logp, "clipped_pg_loss", "advantages");
  check_bt(mask, logp, "clipped_pg_loss", "mask");
  LOOM_CHECK(o.clip_low > 0 && o.clip_low < 1 && o.clip_high > 0,
             "clipped_pg_loss: expected 0 < clip_low < 1 and clip_high > 0, got clip_low ",
             o.clip_low, " and clip_high ", o.clip_high);
  Tensor m = as_mask(mask, logp);
  // Zeroed outside the mask first: whatever lies there cannot overflow exp() into inf * 0 = NaN.
  Tensor adv = zero_outside(advantages.detach(), m);
  Tensor log_ratio = zero_outside(logp - old_logp.detach(), m);
  Tensor ratio = exp(log_ratio);
  Tensor unclipped = -adv * ratio;
  Tensor clipped = -adv * clamp(ratio, 1.0 - o.clip_low, 1.0 + o.clip_high);
  PgLoss out;
  out.loss = aggregate_loss(maximum(unclipped, clipped), mask, o);
  Tensor active = gt(clipped.detach(), unclipped.detach());
  Tensor one = Tensor::scalar(1.0, ratio.dtype(), ratio.device());
  Tensor below = lt(ratio.detach(), one), above = gt(ratio.detach(), one);
  out.clip_fraction = masked_fraction(active, m);
  out.clip_low_fraction = masked_mean(active.to(m.dtype()) * below.to(m.dtype()), m).item();
  out.clip_high_fraction = masked_mean(active.to(m.dtype()) * above.to(m.dtype()), m).item();
  out.approx_kl = masked_mean(square(log_ratio.detach()) * 0.5, m).item();
  return out;
}

Tensor kl_loss(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator e,
               const PgLossOptions& o) {
  check_bt(ref_logp, logp, "kl_loss", "ref_logp");
  return aggregate_loss(kl_estimate(logp, ref_logp, mask, e), mask, o);
}

}  // namespace loom::rlhf
