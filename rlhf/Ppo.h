// PPO pieces (Schulman et al. 2017; the per-token RLHF form of Ziegler et al. 2019 / InstructGPT):
// generalised advantage estimation, the clipped surrogate policy loss, the clipped value loss and
// the entropy bonus. Losses are token-level means over the response mask of the whole mini-batch.
// Shapes: (B,T) for every per-token tensor; masks have the values' floating dtype.
//
//   GaeOutput g = gae(rewards, old_values, mask, /*gamma=*/1.0, /*lam=*/0.95);
//   Tensor adv = masked_whiten(g.advantages, mask);
//   PolicyLoss pl = ppo_policy_loss(new_logp, old_logp, adv, mask, /*clip=*/0.2);
//   ValueLoss vl = ppo_value_loss(new_values, old_values, g.returns, mask, /*clip=*/0.2);
//   Tensor ent = masked_mean(entropy_from_logits(logits), mask);
//   Tensor loss = pl.loss + 0.5 * vl.loss - ent_coef * ent;
#pragma once

#include "core/tensor/Tensor.h"

namespace loom::rlhf {

struct GaeOutput {
  Tensor advantages;  // (B,T), 0 outside the mask
  Tensor returns;     // (B,T) advantages + values, 0 outside the mask
};
// A_t = delta_t + gamma*lam*A_{t'}, delta_t = r_t + gamma*V_{t'} - V_t, where t' is the next
// masked position of the row (the episode ends after the last one: V = 0, A = 0). Unmasked
// positions are skipped (prompt, padding, or tokens between turns). No gradient; computed in f64.
GaeOutput gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma,
              double lam);

struct PolicyLoss {
  Tensor loss;  // masked mean of max(-A*r, -A*clip(r, 1-eps, 1+eps)); r = exp(logp - old)
  double clip_fraction = 0;  // share of masked tokens where the clipped term was active
  double approx_kl = 0;      // masked mean of 0.5 * (logp - old_logp)^2
};
// logp (B,T) carries the gradient; old_logp and advantages are constants.
PolicyLoss ppo_policy_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& advantages,
                           const Tensor& mask, double clip_eps);

struct ValueLoss {
  Tensor loss;               // 0.5 * masked mean of max((v-R)^2, (v_clip-R)^2)
  double clip_fraction = 0;  // share of masked tokens where the clipped term was larger
};
// v_clip = old_values + clip(values - old_values, -clip_range, clip_range). values carry the
// gradient; old_values and returns are constants.
ValueLoss ppo_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                         const Tensor& mask, double clip_range);

}  // namespace loom::rlhf
