// The update epochs (see PolicyUpdate.h). Each mini-batch's losses are computed on the last
// pipeline stage by MicroBatch objectives; the learners average gradients over data-parallel
// ranks, so each rank's loss is scaled by (its count * dp / the global count), which makes that
// average the gradient of the global aggregate.
#include "rlhf/PolicyUpdate.h"

#include <algorithm>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/util/Check.h"
#include "rlhf/Ppo.h"

namespace loom::rlhf {

namespace {

// Rows `rows` of a (B,T) vector.
template <class T>
std::vector<T> gather_rows(const std::vector<T>& v, const std::vector<int64_t>& rows, int64_t T_) {
  std::vector<T> out;
  out.reserve(rows.size() * size_t(T_));
  for (int64_t r : rows) out.insert(out.end(), v.begin() + r * T_, v.begin() + (r + 1) * T_);
  return out;
}

struct MiniBatch {
  Tensor ids, targets, mask, old_logp, ref_logp, advantages, old_values, returns;
  double tokens = 0;  // loss-mask tokens
  double rows = 0;    // rows with at least one loss-mask token
};

MiniBatch mini_batch(const Rollout& r, const std::vector<int64_t>& rows, bool critic,
                     Device device) {
  const int64_t b = int64_t(rows.size()), T = r.T;
  auto f32 = [&](const std::vector<float>& v) {
    return Tensor::from_vector<float>(gather_rows(v, rows, T), {b, T}, device);
  };
  MiniBatch mb;
  mb.ids = Tensor::from_vector<int64_t>(gather_rows(r.ids, rows, T), {b, T}, device);
  mb.targets = Tensor::from_vector<int64_t>(gather_rows(r.targets, rows, T), {b, T}, device);
  const std::vector<float> mask = gather_rows(r.loss_mask, rows, T);
  for (int64_t i = 0; i < b; ++i) {
    double n = 0;
    for (int64_t t = 0; t < T; ++t) n += mask[size_t(i * T + t)];
    mb.tokens += n;
    mb.rows += n > 0 ? 1.0 : 0.0;
  }
  mb.mask = Tensor::from_vector<float>(mask, {b, T}, device);
  mb.old_logp = f32(r.logp);
  mb.ref_logp = f32(r.ref_logp);
  mb.advantages = f32(r.advantages);
  if (critic) {
    mb.old_values = f32(r.values);
    mb.returns = f32(r.returns);
  }
  return mb;
}

// Sums over mini-batches on the last stage (see UpdateStats for the weights).
enum Acc { kPolicy, kKl, kWeight, kValue, kClip, kClipHigh, kVclip, kEntropy, kApproxKl, kTokens,
           kAccSize };

// The actor's objective: clipped surrogate (+ KL term) - entropy bonus, times `scale`.
pipeline::MicroBatch actor_batch(const models::GPT& pi, const MiniBatch& mb,
                                 const UpdateOptions& o, const PgLossOptions& pg, double weight,
                                 double scale, std::vector<double>& acc) {
  pipeline::MicroBatch a{mb.ids, mb.targets, 0, {}};
  a.objective = [&pi, &mb, &o, pg, weight, scale, &acc](const Tensor& h) {
    Tensor logp = pi.token_logprobs(h, mb.targets, o.temperature, o.vocab);
    PgLoss pl = clipped_pg_loss(logp, mb.old_logp, mb.advantages, mb.mask, pg);
    Tensor loss = pl.loss;
    if (o.kl_coef > 0.0) {
      Tensor kl = kl_loss(logp, mb.ref_logp, mb.mask, o.kl_estimator, pg);
      acc[kKl] += kl.item() * weight;
      loss = loss + kl * o.kl_coef;
    }
    double entropy = 0.0;
    if (o.entropy_coef != 0.0) {
      Tensor ent = masked_mean(pi.entropy(h, o.temperature, o.vocab), mb.mask);
      entropy = ent.item();
      loss = loss - ent * o.entropy_coef;
    } else {
      NoGradGuard g;
      entropy = masked_mean(pi.entropy(h.detach(), o.temperature, o.vocab), mb.mask).item();
    }
    const double t = mb.tokens;
    acc[kPolicy] += pl.loss.item() * weight;
    acc[kWeight] += weight;
    acc[kClip] += pl.clip_fraction * t;
    acc[kClipHigh] += pl.clip_high_fraction * t;
    acc[kEntropy] += entropy * t;
    acc[kApproxKl] += pl.approx_kl * t;
    acc[kTokens] += t;
    return loss * scale;
  };
  return a;
}

// The critic's objective: the clipped value loss (a token mean), times `scale`.
pipeline::MicroBatch critic_batch(const models::RewardModel& v, const MiniBatch& mb,
                                  const UpdateOptions& o, double scale, std::vector<double>& acc) {
  pipeline::MicroBatch c{mb.ids, mb.targets, 0, {}};
  c.objective = [&v, &mb, &o, scale, &acc](const Tensor& h) {
    ValueLoss vl = ppo_value_loss(v.values_of(h), mb.old_values, mb.returns, mb.mask, o.value_clip);
    acc[kValue] += vl.loss.item() * mb.tokens;
    acc[kVclip] += vl.clip_fraction * mb.tokens;
    return vl.loss * scale;
  };
  return c;
}

}  // namespace

UpdateStats policy_update(train::Learner& actor, train::Learner* critic, const Rollout& r,
                          const UpdateOptions& o, int64_t step, Device device) {
  LOOM_CHECK(o.mini_batches >= 1 && r.rows % o.mini_batches == 0,
             "policy_update: expected rows divisible by mini_batches=", o.mini_batches, ", got ",
             r.rows, " rows");
  LOOM_CHECK(!critic || int64_t(r.returns.size()) == r.rows * r.T,
             "policy_update: expected PPO returns for the critic, got ", r.returns.size());
  const models::GPT& pi = actor.model();
  const auto* value_model =
      critic ? &dynamic_cast<const models::RewardModel&>(critic->model()) : nullptr;
  const bool by_rows = o.pg.aggregation != LossAggregation::TOKEN_MEAN;
  const double dp = double(actor.dp_size());
  std::vector<double> acc(kAccSize, 0.0);
  double grad_norm = 0.0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    for (int64_t k = 0; k < o.mini_batches; ++k) {
      std::vector<int64_t> rows;
      for (int64_t i = k; i < r.rows; i += o.mini_batches) rows.push_back(i);
      const MiniBatch mb = mini_batch(r, rows, critic != nullptr, device);
      std::vector<double> n = {mb.tokens, mb.rows};
      actor.dp_sum(n);
      if (n[0] == 0.0) continue;  // nothing of this mini-batch is in the loss on any rank
      PgLossOptions pg = o.pg;
      pg.sequence_count = mb.rows;
      const double weight = by_rows ? mb.rows : mb.tokens;
      const double scale = weight * dp / (by_rows ? n[1] : n[0]);
      actor.forward_backward({actor_batch(pi, mb, o, pg, weight, scale, acc)}, step);
      grad_norm = actor.step(o.lr);
      if (!critic) continue;
      critic->forward_backward({critic_batch(*value_model, mb, o, mb.tokens * dp / n[0], acc)},
                               step);
      critic->step(o.lr);
    }
  }
  actor.from_last_stage(acc);
  actor.dp_sum(acc);
  const double w = std::max(acc[kWeight], 1.0), t = std::max(acc[kTokens], 1.0);
  return {acc[kPolicy] / w,    acc[kKl] / w,         acc[kValue] / t,
          acc[kClip] / t,      acc[kClipHigh] / t,   acc[kVclip] / t,
          acc[kEntropy] / t,   acc[kApproxKl] / t,   grad_norm};
}

}  // namespace loom::rlhf
