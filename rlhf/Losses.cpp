// RLHF losses from core ops (see Losses.h). Only softplus has a hand-written backward (one line:
// sigmoid); everything else is composed, so autograd derives the gradients.
#include "rlhf/Losses.h"

#include <vector>

#include "core/autograd/Function.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Nn.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"

namespace loom::rlhf {

namespace {

struct SoftplusFn {
  static constexpr const char* kName = "SoftplusBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x) {
    ctx.save(x);
    return relu(x) + log(1.0 + exp(-abs(x)));
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> grads) {
    return {grads[0] * sigmoid(ctx.saved(0))};
  }
};

Tensor as_mask(const Tensor& mask, const Tensor& like) {
  Tensor m = mask.detach();
  return m.dtype() == like.dtype() ? m : m.to(like.dtype());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* an,
                      const char* bn) {
  LOOM_CHECK(a.shape() == b.shape(), op, ": expected ", an, " and ", bn, " of the same shape, got ",
             a.shape(), " and ", b.shape());
}

}  // namespace

Tensor softplus(const Tensor& x) { return autograd::apply<SoftplusFn>(x); }

Tensor masked_mean(const Tensor& x, const Tensor& mask) {
  Tensor m = as_mask(mask, x);
  const double n = sum(m.expand(x.shape())).item();
  Tensor total = sum(x * m);
  return n > 0 ? total / n : total * 0.0;
}

Tensor masked_var(const Tensor& x, const Tensor& mask, bool unbiased) {
  Tensor m = as_mask(mask, x);
  const double n = sum(m.expand(x.shape())).item();
  Tensor var = masked_mean(square(x - masked_mean(x, m)), m);
  return (unbiased && n > 1) ? var * (n / (n - 1)) : var;
}

Tensor masked_whiten(const Tensor& x, const Tensor& mask, bool shift_mean) {
  NoGradGuard no_grad;
  Tensor xd = x.detach();
  Tensor m = as_mask(mask, xd);
  Tensor mean = masked_mean(xd, m);
  Tensor w = (xd - mean) * rsqrt(masked_var(xd, m) + 1e-8);
  if (!shift_mean) w = w + mean;
  return w * m;
}

Tensor label_mask(const Tensor& labels, DType dtype, int64_t ignore_index) {
  LOOM_CHECK(labels.dtype() == DType::I64, "label_mask: expected labels of dtype i64, got ",
             dtype_name(labels.dtype()));
  std::vector<double> m;
  for (int64_t v : labels.to_vector<int64_t>()) m.push_back(v == ignore_index ? 0.0 : 1.0);
  return Tensor::from_vector(m, labels.shape(), labels.device()).to(dtype);
}

Tensor select_at(const Tensor& values, const Tensor& index) {
  LOOM_CHECK(values.dim() == 2 && index.dim() == 1 && index.size(0) == values.size(0),
             "select_at: expected values (B,T) and index (B), got ", values.shape(), " and ",
             index.shape());
  return gather(values, 1, index.unsqueeze(1)).squeeze(1);
}

Tensor pairwise_reward_loss(const Tensor& r_chosen, const Tensor& r_rejected) {
  check_same_shape(r_chosen, r_rejected, "pairwise_reward_loss", "r_chosen", "r_rejected");
  LOOM_CHECK(r_chosen.numel() > 0, "pairwise_reward_loss: expected at least one pair, got 0");
  return mean(softplus(r_rejected - r_chosen));
}

RewardMetrics reward_metrics(const Tensor& r_chosen, const Tensor& r_rejected) {
  check_same_shape(r_chosen, r_rejected, "reward_metrics", "r_chosen", "r_rejected");
  std::vector<double> c = r_chosen.to_vector<double>(), r = r_rejected.to_vector<double>();
  RewardMetrics out;
  if (c.empty()) return out;
  for (size_t i = 0; i < c.size(); ++i) {
    out.accuracy += c[i] > r[i] ? 1.0 : 0.0;
    out.mean_margin += c[i] - r[i];
  }
  out.accuracy /= double(c.size());
  out.mean_margin /= double(c.size());
  return out;
}

Tensor token_logprobs(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  LOOM_CHECK(logits.dim() == 3 && labels.dim() == 2 && logits.size(0) == labels.size(0) &&
                 logits.size(1) == labels.size(1),
             "token_logprobs: expected logits (B,T,V) and labels (B,T), got ", logits.shape(),
             " and ", labels.shape());
  LOOM_CHECK(labels.dtype() == DType::I64, "token_logprobs: expected labels of dtype i64, got ",
             dtype_name(labels.dtype()));
  std::vector<int64_t> idx = labels.to_vector<int64_t>();
  const int64_t V = logits.size(2);
  for (int64_t& v : idx) {
    if (v == ignore_index) v = 0;
    LOOM_CHECK(v >= 0 && v < V, "token_logprobs: expected labels in [0, ", V, ") or ", ignore_index,
               ", got ", v);
  }
  Tensor index = Tensor::from_vector(idx, {labels.size(0), labels.size(1), 1}, logits.device());
  Tensor lp = gather(log_softmax(logits, -1), 2, index).squeeze(2);
  return lp * label_mask(labels, logits.dtype(), ignore_index);
}

Tensor kl_penalty(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask) {
  check_same_shape(logp, ref_logp, "kl_penalty", "logp", "ref_logp");
  return (logp - ref_logp.detach()) * as_mask(mask, logp);
}

Tensor entropy_from_logits(const Tensor& logits) {
  return -sum(softmax(logits, -1) * log_softmax(logits, -1), {-1});
}

Tensor compute_rewards(const Tensor& score, const Tensor& logp, const Tensor& ref_logp,
                       const Tensor& mask, double kl_coef) {
  check_same_shape(logp, ref_logp, "compute_rewards", "logp", "ref_logp");
  check_same_shape(logp, mask, "compute_rewards", "logp", "mask");
  LOOM_CHECK(logp.dim() == 2 && score.dim() == 1 && score.size(0) == logp.size(0),
             "compute_rewards: expected score (B) and logp (B,T), got ", score.shape(), " and ",
             logp.shape());
  const int64_t B = logp.size(0), T = logp.size(1);
  std::vector<double> lp = logp.to_vector<double>(), ref = ref_logp.to_vector<double>(),
                      m = mask.to_vector<double>(), s = score.to_vector<double>();
  std::vector<double> r(size_t(B * T), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t last = -1;
    for (int64_t t = 0; t < T; ++t) {
      const size_t i = size_t(b * T + t);
      if (m[i] == 0.0) continue;
      r[i] = -kl_coef * (lp[i] - ref[i]);
      last = t;
    }
    if (last >= 0) r[size_t(b * T + last)] += s[size_t(b)];
  }
  return Tensor::from_vector(r, logp.shape(), logp.device()).to(logp.dtype());
}

DpoOutput dpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                   const Tensor& ref_chosen, const Tensor& ref_rejected, double beta) {
  check_same_shape(policy_chosen, policy_rejected, "dpo_loss", "policy_chosen", "policy_rejected");
  check_same_shape(policy_chosen, ref_chosen, "dpo_loss", "policy_chosen", "ref_chosen");
  check_same_shape(policy_chosen, ref_rejected, "dpo_loss", "policy_chosen", "ref_rejected");
  LOOM_CHECK(beta > 0, "dpo_loss: expected beta > 0, got ", beta);
  Tensor hc = policy_chosen - ref_chosen.detach();
  Tensor hr = policy_rejected - ref_rejected.detach();
  DpoOutput out;
  out.loss = mean(softplus((hr - hc) * beta));
  out.chosen_rewards = (hc * beta).detach();
  out.rejected_rewards = (hr * beta).detach();
  RewardMetrics m = reward_metrics(out.chosen_rewards, out.rejected_rewards);
  out.accuracy = m.accuracy;
  out.mean_margin = m.mean_margin;
  return out;
}

const char* kl_estimator_name(KlEstimator e) {
  switch (e) {
    case KlEstimator::K1:
      return "k1";
    case KlEstimator::K2:
      return "k2";
    case KlEstimator::K3:
      return "k3";
  }
  return "?";
}

Tensor kl_estimate(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator e) {
  check_same_shape(logp, ref_logp, "kl_estimate", "logp", "ref_logp");
  Tensor m = as_mask(mask, logp);
  // log(pi_ref / pi), set to 0 outside the mask first (where, not a product, which would turn
  // inf into NaN) so that whatever lies there cannot overflow exp() into NaN.
  Tensor zero = Tensor::scalar(0.0, logp.dtype(), logp.device());
  Tensor d = where(ne(m, zero), ref_logp.detach() - logp, zero);
  Tensor k;
  switch (e) {
    case KlEstimator::K1:
      k = -d;
      break;
    case KlEstimator::K2:
      k = square(d) * 0.5;
      break;
    case KlEstimator::K3:
      k = exp(d) - d - 1.0;
      break;
  }
  return k * m;
}

namespace {

struct PairLogRatios {
  Tensor hc, hr;  // policy - ref per sequence (B)
};

PairLogRatios pair_log_ratios(const char* op, const Tensor& policy_chosen,
                              const Tensor& policy_rejected, const Tensor& ref_chosen,
                              const Tensor& ref_rejected, double beta) {
  check_same_shape(policy_chosen, policy_rejected, op, "policy_chosen", "policy_rejected");
  check_same_shape(policy_chosen, ref_chosen, op, "policy_chosen", "ref_chosen");
  check_same_shape(policy_chosen, ref_rejected, op, "policy_chosen", "ref_rejected");
  LOOM_CHECK(policy_chosen.dim() == 1 && policy_chosen.numel() > 0, op,
             ": expected sequence log-probs of shape (B) with B > 0, got ", policy_chosen.shape());
  LOOM_CHECK(beta > 0, op, ": expected beta > 0, got ", beta);
  return {policy_chosen - ref_chosen.detach(), policy_rejected - ref_rejected.detach()};
}

// Fills the detached rewards and their metrics (accuracy: chosen > rejected; mean margin).
DpoOutput preference_output(Tensor loss, const Tensor& chosen_rewards,
                            const Tensor& rejected_rewards) {
  DpoOutput out;
  out.loss = std::move(loss);
  out.chosen_rewards = chosen_rewards.detach();
  out.rejected_rewards = rejected_rewards.detach();
  RewardMetrics m = reward_metrics(out.chosen_rewards, out.rejected_rewards);
  out.accuracy = m.accuracy;
  out.mean_margin = m.mean_margin;
  return out;
}

}  // namespace

DpoOutput ipo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                   const Tensor& ref_chosen, const Tensor& ref_rejected, double beta) {
  PairLogRatios h =
      pair_log_ratios("ipo_loss", policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta);
  Tensor loss = mean(square(h.hc - h.hr - 1.0 / (2.0 * beta)));
  return preference_output(loss, h.hc * beta, h.hr * beta);
}

DpoOutput cdpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                    const Tensor& ref_chosen, const Tensor& ref_rejected, double beta,
                    double label_smoothing) {
  PairLogRatios h =
      pair_log_ratios("cdpo_loss", policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta);
  LOOM_CHECK(label_smoothing >= 0 && label_smoothing < 0.5,
             "cdpo_loss: expected label_smoothing in [0, 0.5), got ", label_smoothing);
  Tensor z = (h.hc - h.hr) * beta;
  // -log sigmoid(z) = softplus(-z); -log sigmoid(-z) = softplus(z).
  Tensor loss = mean(softplus(-z) * (1.0 - label_smoothing) + softplus(z) * label_smoothing);
  return preference_output(loss, h.hc * beta, h.hr * beta);
}

DpoOutput simpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                     const Tensor& chosen_lengths, const Tensor& rejected_lengths, double beta,
                     double gamma) {
  check_same_shape(policy_chosen, policy_rejected, "simpo_loss", "policy_chosen",
                   "policy_rejected");
  check_same_shape(policy_chosen, chosen_lengths, "simpo_loss", "policy_chosen", "chosen_lengths");
  check_same_shape(policy_chosen, rejected_lengths, "simpo_loss", "policy_chosen",
                   "rejected_lengths");
  LOOM_CHECK(policy_chosen.dim() == 1 && policy_chosen.numel() > 0,
             "simpo_loss: expected sequence log-probs of shape (B) with B > 0, got ",
             policy_chosen.shape());
  LOOM_CHECK(beta > 0, "simpo_loss: expected beta > 0, got ", beta);
  for (const Tensor* len : {&chosen_lengths, &rejected_lengths}) {
    for (double n : len->to_vector<double>()) {
      LOOM_CHECK(n > 0, "simpo_loss: expected response lengths > 0, got ", n);
    }
  }
  Tensor rc = policy_chosen / as_mask(chosen_lengths, policy_chosen) * beta;
  Tensor rr = policy_rejected / as_mask(rejected_lengths, policy_rejected) * beta;
  Tensor loss = mean(softplus(rr - rc + gamma));  // -log sigmoid(rc - rr - gamma)
  return preference_output(loss, rc, rr);
}

}  // namespace loom::rlhf
